"""Slack: `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:<ts>:<body>")>` and
`X-Slack-Request-Timestamp`, 300 s tolerance (Slack's "Verifying requests from Slack"). Slack
sends no dependable delivery id (a retry repeats the body), so the body's hash is the key."""

from __future__ import annotations

from collections.abc import Sequence

from app.web.schemes import (
    Delivery,
    SignatureInvalid,
    Verified,
    body_key,
    check_age,
    decode_sha256_hex,
    hmac_sha256,
    parse_timestamp,
    require_match,
)


def verify(secrets: Sequence[str], delivery: Delivery) -> Verified:
    header = delivery.header("x-slack-signature")
    stamp = delivery.header("x-slack-request-timestamp").strip()
    if not (header and stamp):
        raise SignatureInvalid(
            "missing", "X-Slack-Signature and X-Slack-Request-Timestamp are required"
        )
    timestamp = parse_timestamp(stamp, "X-Slack-Request-Timestamp")
    version, _, hex_digest = header.strip().partition("=")
    presented = decode_sha256_hex(hex_digest) if version == "v0" else None
    if presented is None:
        raise SignatureInvalid("malformed", "X-Slack-Signature is not v0=<64 hex digits>")
    signed = b"v0:" + stamp.encode() + b":" + delivery.body  # the timestamp as Slack sent it
    require_match((hmac_sha256(secret, signed) for secret in secrets), [presented])
    check_age(timestamp, delivery.now)
    return Verified(body_key(delivery.body))
