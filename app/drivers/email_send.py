"""The `email_send` node: one email over SMTP, or into the outbox when none is configured.

The server is the node's `credential` (an SMTP URL, or `{"url", "from"}`), else SMTP_URL and
SMTP_FROM, else the outbox. The Message-ID is `<idempotency key@sender's domain>`, so the same
node always sends the same Message-ID, and sent_effects keeps a re-run from sending it twice.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.drivers.base import Driver, NodeContext
from app.drivers.credentials import CredentialName, credential_fields
from app.drivers.messaging import effect_of, replayed, require_ledger
from app.errors import PermanentDriverError
from app.messaging import addresses
from app.messaging.smtp import SmtpServer, parse_smtp_url, send_email
from app.safe_http import Allowlist

#: The sender when neither SMTP_FROM nor the credential names one (outbox only).
OUTBOX_SENDER = "dualmcp@localhost"
MAX_RECIPIENTS = 50


class EmailSendDriver(Driver):
    """Send an email (text, optionally with an HTML part); sent once per node of a run."""

    type = "email_send"
    side_effects = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        #: One address or several (a list, or one comma-separated string).
        to: str | list[str]
        cc: str | list[str] = Field(default_factory=list)
        subject: str = Field(max_length=998)
        #: The text body.
        body: str = Field(max_length=1_000_000)
        #: An HTML alternative to the text body.
        html: str | None = Field(None, max_length=1_000_000)
        reply_to: str | None = None
        #: A stored credential: an SMTP URL, or {"url": ..., "from": ...}.
        credential: CredentialName | None = None

        @field_validator("to", "cc")
        @classmethod
        def _addresses(cls, value: str | list[str], info: ValidationInfo) -> list[str]:
            found = addresses.email_addresses(value, str(info.field_name))
            if info.field_name == "to" and not found:
                raise ValueError("to needs at least one address")
            if len(found) > MAX_RECIPIENTS:
                raise ValueError(f"{info.field_name} names more than {MAX_RECIPIENTS} addresses")
            return found

        @field_validator("reply_to")
        @classmethod
        def _reply_to(cls, value: str | None) -> str | None:
            return None if value is None else addresses.email_address(value, "reply_to")

        @field_validator("subject")
        @classmethod
        def _subject(cls, value: str) -> str:
            return addresses.one_line(value, "subject")

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        ledger = require_ledger(ctx, self.type)
        effect = effect_of(ctx, self.type)
        earlier = ledger.done(effect.key)
        if earlier is not None:
            return replayed(earlier)
        server, sender = _server_and_sender(params, ctx)
        to, cc = _as_list(params.to), _as_list(params.cc)
        message = build_message(params, sender, to, cc, message_id(ctx.idempotency_key, sender))
        summary = {"id": message["Message-ID"], "to": to, "cc": cc, "subject": params.subject}
        if server is None:
            stored = {
                "from": sender,
                **summary,
                "reply_to": params.reply_to,
                "body": params.body,
                "html": params.html,
            }
            return ledger.deliver_to_outbox(
                effect,
                "email",
                stored,
                lambda outbox_id: {"backend": "outbox", **summary, "outbox_id": outbox_id},
            )
        refused = send_email(
            server,
            message,
            sender=addresses.bare_address(sender),
            recipients=[addresses.bare_address(a) for a in to + cc],
            timeout_s=ctx.timeout_s,
            allowlist=Allowlist(ctx.settings.http_allowlist),
        )
        output = {"backend": "smtp", **summary, "refused": refused}
        return ledger.record(effect, str(summary["id"]), output)


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _server_and_sender(
    params: EmailSendDriver.Params, ctx: NodeContext
) -> tuple[SmtpServer | None, str]:
    """The node's credential, else the settings, else (None: the outbox)."""
    settings = ctx.settings
    if params.credential is not None:
        credential = ctx.credential(params.credential)
        if isinstance(credential.value, str):
            url, sender = credential.value, settings.smtp_from
        else:
            fields = credential_fields(credential, ("url",), ("from",))
            url, sender = fields["url"], fields.get("from") or settings.smtp_from
        source = f"credential {credential.name!r}"
        server = _parse(url, source, trusted=False)
    elif settings.smtp_url is not None and settings.smtp_url.get_secret_value():
        source = "SMTP_URL"
        server = _parse(settings.smtp_url.get_secret_value(), source, trusted=True)
        sender = settings.smtp_from
    else:
        return None, _sender(settings.smtp_from or OUTBOX_SENDER, "SMTP_FROM")
    if not sender:
        if server.username and "@" in server.username:
            sender = server.username
        else:
            raise PermanentDriverError(f"no sender: set SMTP_FROM (or `from` in the {source})")
    return server, _sender(
        sender, "SMTP_FROM" if source == "SMTP_URL" else f"`from` of the {source}"
    )


def _parse(url: str, source: str, *, trusted: bool) -> SmtpServer:
    try:
        return parse_smtp_url(url, source=source, trusted=trusted)
    except ValueError as exc:
        raise PermanentDriverError(str(exc)) from None


def _sender(value: str, source: str) -> str:
    try:
        return addresses.email_address(value, source)
    except ValueError as exc:
        raise PermanentDriverError(str(exc)) from None


def message_id(key: str, sender: str) -> str:
    """`<key@domain>`: the idempotency key is the Message-ID's local part."""
    domain = addresses.bare_address(sender).rpartition("@")[2] or "localhost"
    return f"<{key}@{domain}>"


def build_message(
    params: EmailSendDriver.Params, sender: str, to: list[str], cc: list[str], msg_id: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    if params.reply_to:
        message["Reply-To"] = params.reply_to
    message["Subject"] = params.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = msg_id
    message.set_content(params.body)
    if params.html is not None:
        message.add_alternative(params.html, subtype="html")
    return message
