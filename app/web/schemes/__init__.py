"""What every webhook signature scheme shares: the delivery as received, the refusal, and the
constant-time checks. One module per scheme (standard, github, stripe, slack, twilio, token)
holds `verify(secrets, delivery) -> Verified`; app/web/signatures.py is the table of them.

Pure: no Flask, no database. A refusal's `reason` (missing, malformed, mismatch, stale, future)
is for the log only: the HTTP answer stays generic so a forger learns nothing. A signature is
checked before its timestamp, so "stale" and "future" name a genuine sender (a replay, or a
clock off by more than the tolerance) rather than a forgery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from app.errors import DualMCPError

Reason = Literal["missing", "malformed", "mismatch", "stale", "future"]

#: Seconds a signed timestamp may be off, in either direction (Standard Webhooks, Stripe, Slack).
TOLERANCE_S = 300


class SignatureInvalid(DualMCPError):
    """The delivery is not signed by any active secret; `reason` is for the log only."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Delivery:
    """One webhook request as its sender sent it: the raw bytes, never a re-encoding."""

    body: bytes
    #: Header names in lower case.
    headers: Mapping[str, str]
    #: Unix time of arrival.
    now: float
    #: The URL the sender posted to, query included (Twilio signs it; a token may ride in it).
    url: str = ""

    def header(self, name: str) -> str:
        """The header's value ("" when absent); `name` in lower case."""
        return self.headers.get(name, "")


@dataclass(frozen=True)
class Verified:
    """A delivery signed by one of the active secrets."""

    #: Deduplicates redeliveries of the same message (DESIGN.md: idempotency).
    idempotency_key: str


#: A scheme: the active secrets (several while one is rotated out) and the delivery.
Verifier = Callable[[Sequence[str], Delivery], Verified]


def body_key(body: bytes) -> str:
    """An idempotency key for senders that give none: identical bodies are the same delivery."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def require_match(expected: Iterable[bytes], presented: Sequence[bytes]) -> None:
    """Constant-time comparison of every expected signature against every presented one."""
    matched = False
    for candidate in expected:
        for signature in presented:
            matched |= hmac.compare_digest(candidate, signature)
    if not matched:
        raise SignatureInvalid("mismatch", "no active secret produced a presented signature")


def check_age(timestamp: int, now: float) -> None:
    """Stale or future past TOLERANCE_S; call it after the signature matched."""
    if now - timestamp > TOLERANCE_S:
        raise SignatureInvalid("stale", f"signed {now - timestamp:.0f}s ago")
    if timestamp - now > TOLERANCE_S:
        raise SignatureInvalid("future", f"signed {timestamp - now:.0f}s in the future")


def parse_timestamp(value: str, name: str) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        raise SignatureInvalid("malformed", f"{name} is not a Unix timestamp in seconds")
    return int(value)


def hmac_sha256(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def decode_b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_sha256_hex(value: str) -> bytes | None:
    """A hex SHA-256 digest as bytes; None unless exactly 64 hex digits."""
    try:
        decoded = bytes.fromhex(value)
    except ValueError:
        return None
    return decoded if len(decoded) == hashlib.sha256().digest_size else None
