"""A webhook delivery as the run sees it: its body as the `trigger` payload, and the URL it
was posted to (issue 13, section 4: what real senders send).

Read only after the signature was checked on the raw bytes. `application/json`: an object, or an
array (SendGrid posts batches); `application/x-www-form-urlencoded` (Twilio, Slack): an object of
strings, a repeated key's values as a list; `text/plain` (AWS SNS): `{"text": <body>}`. Any
other content type is 415; text PostgreSQL cannot store (a NUL) is 422 `invalid_text`, as in
JSON (app/web/json_body.py). The workflow's input schema, when it has one, is checked afterwards
against whichever of these the payload is.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from flask import request

from app.engine.storable_text import unstorable_text_problems
from app.web.api import read_json
from app.web.errors import ApiError
from app.web.json_body import invalid_text

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
TEXT = "text/plain"
#: A form with more fields than this is malformed: no sender needs them, and each costs a
#: dict entry and a stored JSON member.
MAX_FORM_FIELDS = 1000

Form = dict[str, str | list[str]]


class MalformedBody(ValueError):
    """The bytes are not what their content type says (a 400 `malformed_body`)."""


def read_webhook_payload() -> Any:
    """The current request's payload; ApiError 400, 415 or 422 when there is none to take."""
    mimetype = request.mimetype
    if mimetype == JSON:
        return _json_payload(read_json())
    if mimetype not in (FORM, TEXT):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"a webhook body must be {JSON}, {FORM} or {TEXT}",
        )
    raw = request.get_data(cache=True)
    charset = request.mimetype_params.get("charset") or "utf-8"
    try:
        payload = form_payload(raw, charset) if mimetype == FORM else text_payload(raw, charset)
    except MalformedBody as exc:
        raise ApiError(400, "malformed_body", str(exc)) from None
    # A NUL (`%00`, or the byte itself) is valid form or text, but PostgreSQL cannot store it.
    problems = unstorable_text_problems(payload)
    if problems:
        raise invalid_text(problems)
    return payload


def form_fields(raw: bytes, charset: str = "utf-8") -> list[tuple[str, str]]:
    """The form's (name, value) pairs in body order, blanks kept (Slack sends `text=`)."""
    try:
        return parse_qsl(
            raw.decode(charset),
            keep_blank_values=True,
            encoding=charset,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except LookupError:
        raise MalformedBody(f"the charset {charset!r} is unknown") from None
    except UnicodeDecodeError:
        raise MalformedBody(f"the form is not {charset} (after percent-decoding)") from None
    except ValueError:  # parse_qsl: "Max number of fields exceeded"
        raise MalformedBody(f"the form has more than {MAX_FORM_FIELDS} fields") from None


def form_payload(raw: bytes, charset: str = "utf-8") -> Form:
    """The form as an object: one value as a string, a repeated key's values as a list."""
    payload: Form = {}
    for name, value in form_fields(raw, charset):
        held = payload.get(name)
        if held is None:
            payload[name] = value
        elif isinstance(held, list):
            held.append(value)
        else:
            payload[name] = [held, value]
    return payload


def text_payload(raw: bytes, charset: str = "utf-8") -> dict[str, str]:
    try:
        return {"text": raw.decode(charset)}
    except LookupError:
        raise MalformedBody(f"the charset {charset!r} is unknown") from None
    except UnicodeDecodeError:
        raise MalformedBody(f"the body is not {charset} text") from None


def delivery_url(public_base_url: str | None) -> str:
    """The URL the sender posted to, query included. Behind a proxy the request's own URL is
    the proxy's upstream, so `DUALMCP_PUBLIC_BASE_URL` (scheme, host and any path prefix) is
    put before the path instead (Twilio signs the URL it posted to)."""
    if not public_base_url:
        return request.url
    query = request.query_string.decode("latin-1")  # as sent: percent-encoded ASCII
    return public_base_url.rstrip("/") + request.path + (f"?{query}" if query else "")


def _json_payload(data: Any) -> Any:
    if isinstance(data, dict | list):
        return data
    problem = {
        "code": "object_or_array_type",
        "path": "",
        "message": "a JSON webhook body must be an object or an array",
    }
    raise ApiError(422, "validation_failed", "invalid fields: (body)", {"problems": [problem]})
