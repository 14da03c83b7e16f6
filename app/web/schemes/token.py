"""A per-workflow trigger token, for senders that cannot sign: `Authorization: Bearer <token>`
or `?token=<token>`. The "secrets" are the stored SHA-256 digests (app/workflows/trigger_tokens.py),
compared in constant time; the token is never logged nor echoed. Deduplicated on an
`Idempotency-Key` header when sent, else the body's hash."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

from app.web.schemes import Delivery, SignatureInvalid, Verified, body_key
from app.workflows.trigger_tokens import token_digest


def verify(secrets: Sequence[str], delivery: Delivery) -> Verified:
    token = _presented_token(delivery)
    digest = token_digest(token).encode()
    matched = False
    for stored in secrets:
        matched |= hmac.compare_digest(stored.encode(), digest)
    if not matched:
        raise SignatureInvalid("mismatch", "the trigger token is not the workflow's")
    key = delivery.header("idempotency-key").strip()
    return Verified(key or body_key(delivery.body))


def _presented_token(delivery: Delivery) -> str:
    authorization = delivery.header("authorization").strip()
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise SignatureInvalid("malformed", "Authorization is not `Bearer <token>`")
        return token.strip()
    tokens = parse_qs(urlsplit(delivery.url).query).get("token")
    if not tokens:
        raise SignatureInvalid("missing", "an Authorization: Bearer header or ?token= is required")
    if len(tokens) > 1:
        raise SignatureInvalid("malformed", "the query names several tokens")
    return tokens[0]
