"""The `http_request` and `data_fetch` nodes: one HTTP call through the SSRF-guarded client.

`send` maps httpx's failures onto the project's error tree for every HTTP-calling driver:
unreachable, 5xx and 429 are worth a retry; timeouts are NodeTimeout; other 4xx are permanent.
Messages name the host and the status, never a query string or a header value.
"""

from __future__ import annotations

import json as jsonlib
from typing import Annotated, Any, Literal

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from app.drivers.base import Driver, NodeContext
from app.drivers.credentials import CredentialName, credential_fields
from app.errors import NodeTimeout, PermanentDriverError, RetryableDriverError
from app.safe_http import MAX_REDIRECTS


def _require_http_url(value: str) -> str:
    if "{{" in value:  # a template, checked again once the task has rendered it
        return value
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


#: A URL param: http(s) once rendered; a plain str so a template passes save-time validation.
HttpUrlStr = Annotated[str, AfterValidator(_require_http_url)]


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


#: An HTTP method; "post" is accepted as POST, as n8n and curl users write it either way.
Method = Annotated[
    Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"], BeforeValidator(_upper)
]


def node_timeout(requested_s: float | None, ctx: NodeContext) -> float:
    """The request's timeout: what the node asked for, never past the node's own timeout."""
    return ctx.timeout_s if requested_s is None else min(requested_s, ctx.timeout_s)


def build_request(ctx: NodeContext, method: str, url: str, **kwargs: Any) -> httpx.Request:
    """`ctx.http.build_request`, with a malformed URL or header a permanent error."""
    try:
        return ctx.http.build_request(method, url, **kwargs)
    except httpx.InvalidURL as exc:
        raise PermanentDriverError("invalid url") from exc
    except UnicodeEncodeError as exc:
        raise PermanentDriverError("header names and values must be ASCII") from exc


def send(
    ctx: NodeContext, request: httpx.Request, *, timeout_s: float, follow_redirects: bool = True
) -> httpx.Response:
    """Send `request` through `ctx.http`, translating transport failures into DriverErrors."""
    host = request.url.host
    try:
        return ctx.http.send(request, follow_redirects=follow_redirects)
    except httpx.TimeoutException as exc:
        raise NodeTimeout(f"timed out after {timeout_s:g}s") from exc
    except httpx.TooManyRedirects as exc:
        raise PermanentDriverError(f"more than {MAX_REDIRECTS} redirects from {host}") from exc
    except (httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.DecodingError) as exc:
        # The type only: h11's messages may quote a header value.
        raise PermanentDriverError(
            f"bad request or response for {host}: {type(exc).__name__}"
        ) from exc
    except httpx.TransportError as exc:  # connect, read, write, remote protocol errors
        raise RetryableDriverError(f"could not reach {host}: {exc}") from exc


def check_status(response: httpx.Response) -> None:
    """Raise for a failure status: 429 and 5xx may pass on retry, other 4xx will not."""
    status, host = response.status_code, response.request.url.host
    if status == 429 or status >= 500:
        raise RetryableDriverError(f"{host} answered {status}")
    if status >= 400:
        raise PermanentDriverError(f"{host} answered {status}")


def credential_header(ctx: NodeContext, name: str) -> dict[str, str]:
    """The header carrying the credential `name`: Bearer for a string, else the one it names."""
    credential = ctx.credential(name)
    if isinstance(credential.value, str):
        return {"Authorization": f"Bearer {credential.value}"}
    fields = credential_fields(credential, ("header", "value"))
    return {fields["header"]: fields["value"]}


def _strict_json(text: str) -> Any:
    """The body as JSON, or None; NaN/Infinity count as not JSON (PostgreSQL refuses them)."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return jsonlib.loads(text, parse_constant=refuse)
    except ValueError:
        return None


class HttpRequestDriver(Driver):
    """Call an HTTP API; the response becomes `{status, headers, json, text}` for later nodes."""

    type = "http_request"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

        url: HttpUrlStr
        method: Method = "GET"
        headers: dict[str, str] = Field(default_factory=dict)
        query: dict[str, str | int | float | bool] = Field(default_factory=dict)
        #: A JSON body (`json` in the definition); exclusive with `body`.
        json_body: Any = Field(None, alias="json")
        #: A raw text body; exclusive with `json`.
        body: str | None = None
        #: Seconds; capped by the node's timeout_s.
        timeout_s: float | None = Field(None, gt=0)
        #: False: any status is output, for a conditional to branch on (no error, no retry).
        fail_on_status: bool = True
        #: A stored credential sent with the request: a string as `Authorization: Bearer
        #: <value>`, or {"header": name, "value": value} as that header.
        credential: CredentialName | None = None

        @model_validator(mode="after")
        def _one_body(self) -> HttpRequestDriver.Params:
            if self.json_body is not None and self.body is not None:
                raise ValueError("give either json or body, not both")
            return self

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        timeout_s = node_timeout(params.timeout_s, ctx)
        headers = dict(params.headers)
        if params.credential is not None:
            headers.update(credential_header(ctx, params.credential))
        request = build_request(
            ctx,
            params.method,
            params.url,
            headers=headers,
            params=params.query,
            json=params.json_body,
            content=params.body,
            timeout=timeout_s,
        )
        response = send(ctx, request, timeout_s=timeout_s)
        if params.fail_on_status:
            check_status(response)
        text = response.text
        return {
            "status": response.status_code,
            "headers": dict(response.headers.items()),
            "json": _strict_json(text) if text else None,
            "text": text,
        }


class DataFetchDriver(HttpRequestDriver):
    """The seed's name for fetching data over HTTP: http_request under another node type."""

    type = "data_fetch"
