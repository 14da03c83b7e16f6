"""Webhook signatures (DESIGN.md: HTTP API, Auth), checked on the raw body in constant time.

The table of schemes a trigger may name; each lives in a small module of app/web/schemes, which
also holds what they share. Pure: no Flask, no database. `verify` returns the delivery's
idempotency key, or raises SignatureInvalid whose `reason` (missing, malformed, mismatch, stale,
future) is meant for the log only. Several secrets may be active at once (rotation); any one of
them signing the body is enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from app.errors import DualMCPError
from app.web.schemes import (
    TOLERANCE_S,
    Delivery,
    Reason,
    SignatureInvalid,
    Verified,
    Verifier,
    body_key,
    github,
    slack,
    standard,
    stripe,
    token,
    twilio,
)

__all__ = [
    "SCHEMES",
    "TOLERANCE_S",
    "Reason",
    "SignatureInvalid",
    "UnknownScheme",
    "Verified",
    "body_key",
    "verify",
]

#: The schemes a trigger may name (the engine's `SignatureScheme` lists the same names, so a
#: workflow naming another is refused when saved). For `token` the "secrets" are the stored
#: digests of the workflow's trigger token.
SCHEMES: dict[str, Verifier] = {
    "standard": standard.verify,
    "github": github.verify,
    "stripe": stripe.verify,
    "slack": slack.verify,
    "twilio": twilio.verify,
    "token": token.verify,
}


class UnknownScheme(DualMCPError, ValueError):
    """A trigger names a signature scheme this module does not know."""


def verify(
    scheme: str,
    secrets: Sequence[str],
    body: bytes,
    headers: Mapping[str, str],
    now: float,
    *,
    url: str = "",
) -> Verified:
    """Check `body` (the raw bytes) as posted to `url` against `headers` with `scheme`;
    SignatureInvalid if no active secret signed it."""
    verifier = SCHEMES.get(scheme)
    if verifier is None:
        raise UnknownScheme(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if not secrets:
        raise ValueError("a webhook trigger needs at least one secret")
    lowered = {name.lower(): value for name, value in headers.items()}
    return verifier(secrets, Delivery(body, lowered, now, url))
