"""Stripe: `Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>[,v1=..]`;
deduplicated on the event's `id` (a retry is signed anew, at another time)."""

from __future__ import annotations

import json
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
    header = delivery.header("stripe-signature")
    if not header:
        raise SignatureInvalid("missing", "Stripe-Signature is required")
    stamps: list[str] = []
    presented: list[bytes] = []
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name == "t":
            stamps.append(value)
        elif name == "v1" and (decoded := decode_sha256_hex(value)) is not None:
            presented.append(decoded)
    if len(stamps) != 1 or not presented:
        raise SignatureInvalid("malformed", "Stripe-Signature needs one t= and a v1= signature")
    timestamp = parse_timestamp(stamps[0], "Stripe-Signature t")
    signed = f"{timestamp}.".encode() + delivery.body
    require_match((hmac_sha256(secret, signed) for secret in secrets), presented)
    check_age(timestamp, delivery.now)
    return Verified(_event_id(delivery.body) or body_key(delivery.body))


def _event_id(body: bytes) -> str | None:
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # the body's own faults are the payload parser's to answer
        return None
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None
