"""The outgoing `webhook` node: POST JSON, signed with Standard Webhooks when it has a secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from app.drivers.base import Driver, NodeContext
from app.drivers.credentials import CredentialName, credential_text
from app.drivers.http_request import HttpUrlStr, build_request, check_status, node_timeout, send
from app.errors import PermanentDriverError


class WebhookDriver(Driver):
    """POST a payload; `webhook-id` = `Idempotency-Key` = the node's key, so retries deduplicate."""

    type = "webhook"
    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        url: HttpUrlStr
        payload: Any = Field(default_factory=dict)
        headers: dict[str, str] = Field(default_factory=dict)
        #: A Standard Webhooks secret (`whsec_<base64>`); None sends the webhook unsigned.
        secret: SecretStr | None = None
        #: A stored credential holding the signing secret, instead of `secret` in the definition.
        credential: CredentialName | None = None
        #: Seconds; capped by the node's timeout_s.
        timeout_s: float | None = Field(None, gt=0)

        @model_validator(mode="after")
        def _one_secret(self) -> WebhookDriver.Params:
            if self.secret is not None and self.credential is not None:
                raise ValueError("give either secret or credential, not both")
            return self

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        timeout_s = node_timeout(params.timeout_s, ctx)
        try:
            body = json.dumps(
                params.payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except ValueError as exc:
            raise PermanentDriverError("payload is not JSON (NaN or Infinity)") from exc
        headers = {**params.headers, "Content-Type": "application/json"}
        headers.update(ctx.idempotency_headers())
        secret = params.secret
        if params.credential is not None:
            secret = SecretStr(credential_text(ctx.credential(params.credential)))
        if secret is not None:
            headers.update(sign(secret, ctx.idempotency_key, body))
        request = build_request(
            ctx, "POST", params.url, headers=headers, content=body.encode(), timeout=timeout_s
        )
        # Receivers answer webhooks directly; a redirect would turn the POST into a GET.
        response = send(ctx, request, timeout_s=timeout_s, follow_redirects=False)
        check_status(response)
        if not response.is_success:  # 1xx/3xx: not delivered, and a redirect is not followed
            raise PermanentDriverError(f"{request.url.host} answered {response.status_code}")
        return {"backend": "http", "id": ctx.idempotency_key, "status": response.status_code}


def sign(secret: SecretStr, msg_id: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for `body`; a fresh timestamp on every attempt."""
    try:
        signer = Webhook(secret.get_secret_value())
    except (ValueError, RuntimeError, EmptyWebhookSecretError):  # binascii.Error is a ValueError
        # The library's own messages are safe, but ours is certain not to echo the secret.
        raise PermanentDriverError("webhook secret is not a valid whsec_ secret") from None
    timestamp = datetime.now(UTC)
    return {
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signer.sign(msg_id, timestamp, body),
    }
