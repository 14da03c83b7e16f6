"""Sending one SMS with the twilio SDK, its HTTP carried by an httpx client of ours.

The SDK builds the request (path, form fields, basic auth) and parses the answer; a small
`twilio.http.HttpClient` sends it with httpx to the configured base: TWILIO_API_BASE (the
operator's, so a trusted client) or a credential's `api_base` (through the SSRF-guarded client,
like every address a workflow names). Every request carries the node's idempotency key as
`Idempotency-Key`, for a compatible server that deduplicates; Twilio itself does not, so the
driver's sent_effects record is what prevents a second SMS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.response import Response

from app.errors import NodeTimeout, PermanentDriverError, RetryableDriverError

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.twilio.com"


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str | None = None
    api_base: str = DEFAULT_API_BASE
    #: True for the TWILIO_* settings (ops set them); False for a workflow's credential.
    trusted: bool = True


@dataclass(frozen=True)
class SentSms:
    sid: str
    status: str | None


class HttpxTwilioClient(HttpClient):  # type: ignore[misc]  # the SDK ships no types
    """The SDK's HTTP, sent with `client` to `api_base` instead of api.twilio.com."""

    def __init__(
        self, client: httpx.Client, api_base: str, headers: dict[str, str], timeout_s: float
    ) -> None:
        super().__init__(logger=log, is_async=False, timeout=timeout_s)
        self._client = client
        self._api_base = api_base.rstrip("/")
        self._headers = headers

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        parts = urlsplit(uri)
        url = self._api_base + parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            response = self._client.request(
                method,
                url,
                params=params,  # type: ignore[arg-type]
                data=data,
                headers={**(headers or {}), **self._headers},
                auth=auth,
                timeout=timeout or self.timeout,
                follow_redirects=allow_redirects,
            )
        except httpx.TimeoutException:
            raise NodeTimeout(f"Twilio API at {urlsplit(url).netloc} timed out") from None
        except httpx.TransportError as exc:
            host = urlsplit(url).netloc
            raise RetryableDriverError(
                f"could not reach the Twilio API at {host}: {type(exc).__name__}"
            ) from None
        return Response(response.status_code, response.text, response.headers)


def send_sms(
    account: TwilioAccount,
    *,
    to: str,
    from_number: str,
    body: str,
    http: httpx.Client,
    idempotency_key: str,
    timeout_s: float,
) -> SentSms:
    """Create the message with the Messages API; raises DriverErrors that quote no secret."""
    from twilio.rest import Client  # the SDK loads only where an SMS is sent

    bridge = HttpxTwilioClient(
        http, account.api_base, {"Idempotency-Key": idempotency_key}, timeout_s
    )
    client = Client(
        username=account.account_sid,
        password=account.auth_token,
        account_sid=account.account_sid,
        http_client=bridge,
    )
    try:
        message: Any = client.api.v2010.account.messages.create(to=to, from_=from_number, body=body)
    except TwilioRestException as exc:
        kind = (
            RetryableDriverError if exc.status == 429 or exc.status >= 500 else PermanentDriverError
        )
        detail = " ".join(str(exc.msg or "").split())[:200]
        code = f" (error {exc.code})" if exc.code else ""
        raise kind(f"Twilio answered {exc.status}{code}: {detail}".rstrip(": ")) from None
    if not message.sid:
        raise PermanentDriverError("Twilio's answer has no message sid")
    return SentSms(sid=str(message.sid), status=message.status)
