"""Standard Webhooks (the default): `webhook-id`, `webhook-timestamp`, and
`webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<ts>.<body>")>` (the `standardwebhooks`
package signs), secrets `whsec_<base64>`; `webhook-id` is the idempotency key."""

from __future__ import annotations

import base64
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

from app.web.schemes import (
    Delivery,
    SignatureInvalid,
    Verified,
    check_age,
    decode_b64,
    parse_timestamp,
    require_match,
)

log = logging.getLogger(__name__)


def verify(secrets: Sequence[str], delivery: Delivery) -> Verified:
    message_id = delivery.header("webhook-id")
    stamp = delivery.header("webhook-timestamp")
    header = delivery.header("webhook-signature")
    if not (message_id and stamp and header):
        raise SignatureInvalid(
            "missing", "webhook-id, webhook-timestamp and webhook-signature are required"
        )
    timestamp = parse_timestamp(stamp, "webhook-timestamp")
    presented = [
        decoded
        for version, _, encoded in (token.partition(",") for token in header.split())
        if version == "v1" and (decoded := decode_b64(encoded)) is not None
    ]
    if not presented:
        raise SignatureInvalid("malformed", "webhook-signature holds no v1 signature")
    try:
        text = delivery.body.decode("utf-8")  # the package signs text; senders sign UTF-8
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
    require_match(expected, presented)
    check_age(timestamp, delivery.now)
    return Verified(message_id)
