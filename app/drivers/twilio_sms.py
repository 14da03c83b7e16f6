"""The `twilio_sms` node: one SMS with the twilio SDK, or into the outbox when none is set up.

The account is the node's `credential` (`{"account_sid", "auth_token", "from_number"?,
"api_base"?}`), else the TWILIO_* settings, else the outbox. Twilio takes no idempotency key
for a new message, so sent_effects keeps a re-run of the node from sending a second SMS.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.drivers.base import Driver, NodeContext
from app.drivers.credentials import CredentialName, credential_fields
from app.drivers.http_request import HttpUrlStr
from app.drivers.messaging import effect_of, replayed, require_ledger
from app.errors import PermanentDriverError
from app.messaging import addresses
from app.messaging.twilio_sms import DEFAULT_API_BASE, SentSms, TwilioAccount, send_sms

#: Twilio's limit for one message body (it splits it into segments).
MAX_BODY = 1600


class TwilioSmsDriver(Driver):
    """Send an SMS to an E.164 number; the output carries Twilio's message sid."""

    type = "twilio_sms"
    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

        to: str
        body: str = Field(min_length=1, max_length=MAX_BODY)
        #: The sender (`from` in the definition); TWILIO_FROM_NUMBER or the credential's when
        #: left out.
        from_: str | None = Field(None, alias="from")
        #: A stored credential: {"account_sid", "auth_token", "from_number"?, "api_base"?}.
        credential: CredentialName | None = None

        @field_validator("to", "from_")
        @classmethod
        def _e164(cls, value: str | None, info: ValidationInfo) -> str | None:
            name = "from" if info.field_name == "from_" else str(info.field_name)
            return None if value is None else addresses.e164(value, name)

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        ledger = require_ledger(ctx, self.type)
        effect = effect_of(ctx, self.type)
        earlier = ledger.done(effect.key)
        if earlier is not None:
            return replayed(earlier)
        account = _account(params, ctx)
        if account is None:
            sender = params.from_ or ctx.settings.twilio_from_number
            message = {"from": sender, "to": params.to, "body": params.body}
            return ledger.deliver_to_outbox(
                effect,
                "sms",
                message,
                lambda outbox_id: {
                    "backend": "outbox",
                    "id": f"outbox-{outbox_id}",
                    "outbox_id": outbox_id,
                    "to": params.to,
                },
            )
        sender = params.from_ or account.from_number
        if not sender:
            raise PermanentDriverError(
                "no sender: set `from`, TWILIO_FROM_NUMBER or the credential's from_number"
            )
        sent = _send(account, params.to, _checked_sender(sender), params.body, ctx)
        output = {
            "backend": "twilio",
            "id": sent.sid,
            "sid": sent.sid,
            "status": sent.status,
            "to": params.to,
        }
        return ledger.record(effect, sent.sid, output)


def _account(params: TwilioSmsDriver.Params, ctx: NodeContext) -> TwilioAccount | None:
    """The node's credential, else the settings, else None (the outbox)."""
    if params.credential is not None:
        credential = ctx.credential(params.credential)
        fields = credential_fields(
            credential, ("account_sid", "auth_token"), ("from_number", "api_base")
        )
        api_base = fields.get("api_base", DEFAULT_API_BASE)
        try:
            _ApiBase.model_validate({"url": api_base})
        except ValueError:
            raise PermanentDriverError(
                f"credential {credential.name!r}: api_base must be an http(s) URL"
            ) from None
        return TwilioAccount(
            account_sid=fields["account_sid"],
            auth_token=fields["auth_token"],
            from_number=fields.get("from_number"),
            api_base=api_base,
            trusted=False,
        )
    settings = ctx.settings
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
    if not (settings.twilio_account_sid and token):
        return None
    return TwilioAccount(
        account_sid=settings.twilio_account_sid,
        auth_token=token,
        from_number=settings.twilio_from_number,
        api_base=settings.twilio_api_base or DEFAULT_API_BASE,
    )


def _send(account: TwilioAccount, to: str, sender: str, body: str, ctx: NodeContext) -> SentSms:
    """A credential's server is reached through the SSRF-guarded client; the operator's
    (TWILIO_API_BASE, api.twilio.com) with a plain one, as the LLM providers' settings are."""
    if not account.trusted:
        return send_sms(
            account,
            to=to,
            from_number=sender,
            body=body,
            http=ctx.http,
            idempotency_key=ctx.idempotency_key,
            timeout_s=ctx.timeout_s,
        )
    with httpx.Client(timeout=ctx.timeout_s) as http:
        return send_sms(
            account,
            to=to,
            from_number=sender,
            body=body,
            http=http,
            idempotency_key=ctx.idempotency_key,
            timeout_s=ctx.timeout_s,
        )


class _ApiBase(BaseModel):
    url: HttpUrlStr


def _checked_sender(sender: str) -> str:
    try:
        return addresses.e164(sender, "from")
    except ValueError as exc:
        raise PermanentDriverError(str(exc)) from None
