"""GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, no timestamp;
deduplicated on `X-GitHub-Delivery` (the body's hash when absent)."""

from __future__ import annotations

from collections.abc import Sequence

from app.web.schemes import (
    Delivery,
    SignatureInvalid,
    Verified,
    body_key,
    decode_sha256_hex,
    hmac_sha256,
    require_match,
)


def verify(secrets: Sequence[str], delivery: Delivery) -> Verified:
    header = delivery.header("x-hub-signature-256")
    if not header:
        raise SignatureInvalid("missing", "X-Hub-Signature-256 is required")
    algorithm, _, hex_digest = header.strip().partition("=")
    presented = decode_sha256_hex(hex_digest) if algorithm == "sha256" else None
    if presented is None:
        raise SignatureInvalid("malformed", "X-Hub-Signature-256 is not sha256=<64 hex digits>")
    require_match((hmac_sha256(secret, delivery.body) for secret in secrets), [presented])
    return Verified(delivery.header("x-github-delivery") or body_key(delivery.body))
