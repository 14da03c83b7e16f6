"""Webhook signatures (DESIGN.md: HTTP API, Auth), checked on the raw body in constant time.

Pure: no Flask, no database. `verify` returns the delivery's idempotency key, or raises
SignatureInvalid whose `reason` (missing, malformed, mismatch, stale, future) is meant for the
log only: the HTTP answer stays generic so a forger learns nothing. Several secrets may be active
at once (rotation); any one of them signing the body is enough.

The signature is checked before the timestamp, so "stale" and "future" name a genuine sender
(a replay, or a clock off by more than the tolerance) rather than a forgery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, get_args

from standardwebhooks import Webhook

from app.engine.schema import SignatureScheme
from app.errors import DualMCPError

log = logging.getLogger(__name__)

#: The schemes a trigger may name; the engine's schema refuses others when a workflow is saved.
SCHEMES: tuple[str, ...] = get_args(SignatureScheme)
Reason = Literal["missing", "malformed", "mismatch", "stale", "future"]

#: Seconds a signed timestamp may be off, in either direction (Standard Webhooks and Stripe).
TOLERANCE_S = 300


class SignatureInvalid(DualMCPError):
    """The delivery is not signed by any active secret; `reason` is for the log only."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


class UnknownScheme(DualMCPError, ValueError):
    """A trigger names a signature scheme this module does not know."""


@dataclass(frozen=True)
class Verified:
    """A delivery signed by one of the active secrets."""

    #: Deduplicates redeliveries of the same message (DESIGN.md: idempotency).
    idempotency_key: str


def verify(
    scheme: str, secrets: list[str], body: bytes, headers: Mapping[str, str], now: float
) -> Verified:
    """Check `body` (the raw bytes) against `headers` with `scheme`; SignatureInvalid if not."""
    if scheme not in SCHEMES:
        raise UnknownScheme(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if not secrets:
        raise ValueError("a webhook trigger needs at least one secret")
    lowered = {name.lower(): value for name, value in headers.items()}
    if scheme == "github":
        return _verify_github(secrets, body, lowered)
    if scheme == "stripe":
        return _verify_stripe(secrets, body, lowered, now)
    return _verify_standard(secrets, body, lowered, now)


def body_key(body: bytes) -> str:
    """An idempotency key for senders that give none: identical bodies are the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _verify_standard(
    secrets: list[str], body: bytes, headers: dict[str, str], now: float
) -> Verified:
    """Standard Webhooks: `v1,<base64 HMAC-SHA256(secret, "<id>.<ts>.<body>")>`."""
    message_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    header = headers.get("webhook-signature", "")
    if not (message_id and stamp and header):
        raise SignatureInvalid(
            "missing", "webhook-id, webhook-timestamp and webhook-signature are required"
        )
    timestamp = _parse_timestamp(stamp, "webhook-timestamp")
    presented = [
        decoded
        for version, _, encoded in (token.partition(",") for token in header.split())
        if version == "v1" and (decoded := _b64(encoded)) is not None
    ]
    if not presented:
        raise SignatureInvalid("malformed", "webhook-signature holds no v1 signature")
    try:
        text = body.decode("utf-8")  # the package signs text; a JSON body is UTF-8 anyway
    except UnicodeDecodeError:
        raise SignatureInvalid("malformed", "the body is not UTF-8") from None
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    expected = []
    for index, secret in enumerate(secrets):
        try:
            signature = Webhook(secret).sign(message_id, signed_at, text)
        except Exception:  # a secret the package cannot decode: never fatal for the others
            log.warning("webhook secret #%d is not a Standard Webhooks secret; skipped", index)
            continue
        expected.append(base64.b64decode(signature.partition(",")[2]))
    _require_match(expected, presented)
    _check_age(timestamp, now)
    return Verified(message_id)


def _verify_github(secrets: list[str], body: bytes, headers: dict[str, str]) -> Verified:
    """GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`; no timestamp."""
    header = headers.get("x-hub-signature-256", "")
    if not header:
        raise SignatureInvalid("missing", "X-Hub-Signature-256 is required")
    algorithm, _, hex_digest = header.strip().partition("=")
    presented = _hex(hex_digest) if algorithm == "sha256" else None
    if presented is None:
        raise SignatureInvalid("malformed", "X-Hub-Signature-256 is not sha256=<64 hex digits>")
    _require_match((_hmac(secret, body) for secret in secrets), [presented])
    return Verified(headers.get("x-github-delivery") or body_key(body))


def _verify_stripe(
    secrets: list[str], body: bytes, headers: dict[str, str], now: float
) -> Verified:
    """Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>[,v1=..]`."""
    header = headers.get("stripe-signature", "")
    if not header:
        raise SignatureInvalid("missing", "Stripe-Signature is required")
    stamps: list[str] = []
    presented: list[bytes] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1" and (decoded := _hex(value)) is not None:
            presented.append(decoded)
    if len(stamps) != 1 or not presented:
        raise SignatureInvalid("malformed", "Stripe-Signature needs one t= and a v1= signature")
    timestamp = _parse_timestamp(stamps[0], "Stripe-Signature t")
    signed = f"{timestamp}.".encode() + body
    _require_match((_hmac(secret, signed) for secret in secrets), presented)
    _check_age(timestamp, now)
    return Verified(_stripe_event_id(body) or body_key(body))


def _require_match(expected: Iterable[bytes], presented: list[bytes]) -> None:
    """Constant-time comparison of every expected signature against every presented one."""
    matched = False
    for candidate in expected:
        for signature in presented:
            matched |= hmac.compare_digest(candidate, signature)
    if not matched:
        raise SignatureInvalid("mismatch", "no active secret produced a presented signature")


def _check_age(timestamp: int, now: float) -> None:
    if now - timestamp > TOLERANCE_S:
        raise SignatureInvalid("stale", f"signed {now - timestamp:.0f}s ago")
    if timestamp - now > TOLERANCE_S:
        raise SignatureInvalid("future", f"signed {timestamp - now:.0f}s in the future")


def _parse_timestamp(value: str, name: str) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise SignatureInvalid("malformed", f"{name} is not a Unix timestamp in seconds")
    return int(value)


def _hmac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _hex(value: str) -> bytes | None:
    try:
        decoded = bytes.fromhex(value)
    except ValueError:
        return None
    return decoded if len(decoded) == hashlib.sha256().digest_size else None


def _stripe_event_id(body: bytes) -> str | None:
    try:
        event = json.loads(body)
    except ValueError:
        return None
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None
