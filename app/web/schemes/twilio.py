"""Twilio: `X-Twilio-Signature: base64(HMAC-SHA1(auth token, URL + each form field's name and
value, sorted by name))`, as the `twilio` SDK's RequestValidator computes it (our tests use it
as the oracle). A JSON body is signed through the URL alone, which carries the body's hex
SHA-256 as `bodySHA256`. The URL is checked with and without the scheme's default port, since
Twilio is not consistent about it; `X-Twilio-Webhooks-Signature-Settings` may name HMAC_SHA256
(a SharedKey secret). Deduplicated on `I-Twilio-Idempotency-Token`, else the body's hash.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

from app.web.schemes import (
    Delivery,
    SignatureInvalid,
    Verified,
    body_key,
    decode_b64,
    require_match,
)
from app.web.webhook_payloads import FORM, MalformedBody, form_fields

#: The settings header's algorithm names, as hashlib names them.
_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def verify(secrets: Sequence[str], delivery: Delivery) -> Verified:
    header = delivery.header("x-twilio-signature").strip()
    if not header:
        raise SignatureInvalid("missing", "X-Twilio-Signature is required")
    digest = _algorithm(delivery.header("x-twilio-webhooks-signature-settings"))
    presented = decode_b64(header)
    if presented is None or len(presented) != hashlib.new(digest).digest_size:
        raise SignatureInvalid("malformed", "X-Twilio-Signature is not a base64 HMAC")
    body_hash = parse_qs(urlsplit(delivery.url).query).get("bodySHA256")
    fields: list[tuple[str, str]] = []
    if body_hash is None and delivery.header("content-type").partition(";")[0].strip() == FORM:
        try:
            fields = form_fields(delivery.body)
        except MalformedBody as exc:
            raise SignatureInvalid("malformed", str(exc)) from None
    expected = (
        _signature(secret, url, fields, digest)
        for secret in secrets
        for url in _with_and_without_port(delivery.url)
    )
    require_match(expected, [presented])
    if body_hash is not None and not hmac.compare_digest(
        hashlib.sha256(delivery.body).hexdigest().encode(), body_hash[0].encode()
    ):
        raise SignatureInvalid("mismatch", "the body does not match the URL's bodySHA256")
    return Verified(delivery.header("i-twilio-idempotency-token") or body_key(delivery.body))


def _signature(secret: str, url: str, fields: list[tuple[str, str]], digest: str) -> bytes:
    """The SDK's order: names sorted, each name's distinct values sorted, then name + value."""
    values: dict[str, set[str]] = {}
    for name, value in fields:
        values.setdefault(name, set()).add(value)
    signed = url + "".join(
        name + value for name in sorted(values) for value in sorted(values[name])
    )
    return hmac.new(secret.encode(), signed.encode(), digest).digest()


def _with_and_without_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.port is not None:
        return url, parts._replace(netloc=parts.netloc.rpartition(":")[0]).geturl()
    default = 443 if parts.scheme == "https" else 80
    return url, parts._replace(netloc=f"{parts.netloc}:{default}").geturl()


def _algorithm(settings: str) -> str:
    """HMAC_SHA1 (the Auth Token) unless the settings header names another."""
    for part in settings.split(","):
        name, separator, value = part.partition("=")
        if separator and name.strip() == "algorithm" and value.strip():
            digest = _ALGORITHMS.get(value.strip().upper())
            if digest is None:
                raise SignatureInvalid("malformed", "an unknown Twilio signature algorithm")
            return digest
    return "sha1"
