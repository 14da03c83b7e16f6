"""email_send against aiosmtpd on loopback: plain, login, STARTTLS, TLS, the outbox, re-runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.credentials import cipher_for, put_credential
from app.drivers import get_driver
from app.drivers.email_send import EmailSendDriver
from app.errors import BlockedDestination, PermanentDriverError, RetryableDriverError
from app.models import OutboxMessage, SentEffect
from tests.drivers.conftest import ENCRYPTION_KEY, WORKFLOW_ID, MakeContext
from tests.messaging_peers import SelfSignedCert, SmtpPeer, free_port, self_signed_cert

DRIVER = get_driver("email_send")
SENDER = "Sales <sales@example.com>"


def params(**overrides: Any) -> EmailSendDriver.Params:
    values: dict[str, Any] = {
        "to": "Ada Lovelace <ada@example.com>",
        "subject": "Welcome",
        "body": "Hello Ada",
        **overrides,
    }
    return EmailSendDriver.Params.model_validate(values)


def smtp_settings(url: str, **extra: Any) -> Settings:
    return Settings(
        http_allowlist="127.0.0.1",
        encryption_key=ENCRYPTION_KEY,
        smtp_url=url,
        smtp_from=SENDER,
        **extra,
    )


@pytest.fixture
def smtp() -> Iterator[SmtpPeer]:
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
def cert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SelfSignedCert:
    """A certificate for 127.0.0.1 that this process trusts (ssl's default verify paths)."""
    made = self_signed_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(made.cert_file))
    return made


def test_sends_one_email_with_the_idempotency_key_as_message_id(
    smtp: SmtpPeer, make_ctx: MakeContext
) -> None:
    ctx = make_ctx(settings=smtp_settings(smtp.url))
    output = DRIVER.run(
        params(cc=["bob@example.com"], reply_to="help@example.com", html="<p>Hello Ada</p>"), ctx
    )

    [received] = smtp.received
    message = received.message
    assert message["Message-ID"] == f"<{ctx.idempotency_key}@example.com>"
    assert (message["From"], message["To"], message["Cc"]) == (
        SENDER,
        "Ada Lovelace <ada@example.com>",
        "bob@example.com",
    )
    assert (message["Reply-To"], message["Subject"]) == ("help@example.com", "Welcome")
    assert received.mail_from == "sales@example.com"
    assert received.rcpt_tos == ["ada@example.com", "bob@example.com"]
    assert message.get_body(("plain",)).get_content().strip() == "Hello Ada"
    assert message.get_body(("html",)).get_content().strip() == "<p>Hello Ada</p>"
    assert output == {
        "backend": "smtp",
        "id": message["Message-ID"],
        "to": ["Ada Lovelace <ada@example.com>"],
        "cc": ["bob@example.com"],
        "subject": "Welcome",
        "refused": [],
    }


def test_a_rerun_of_the_node_sends_nothing_and_returns_the_first_output(
    smtp: SmtpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    settings = smtp_settings(smtp.url)
    first = DRIVER.run(params(), make_ctx(settings=settings, attempt=1))
    again = DRIVER.run(params(), make_ctx(settings=settings, attempt=2))

    assert len(smtp.received) == 1
    assert again == {**first, "replayed": True}
    with agent_sessions() as session:
        effect = session.get(SentEffect, make_ctx().idempotency_key)
    assert effect is not None
    assert (effect.node_type, effect.provider_id) == ("email_send", first["id"])


def test_the_effect_is_recorded_before_the_driver_returns(
    smtp: SmtpPeer, make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    ctx = make_ctx(settings=smtp_settings(smtp.url), node_id="recorded")
    DRIVER.run(params(), ctx)
    with agent_sessions() as session:  # a fresh session: committed, not merely flushed
        keys = session.scalars(select(SentEffect.idempotency_key)).all()
    assert ctx.idempotency_key in keys


def test_logs_in_with_the_url_credentials(make_ctx: MakeContext) -> None:
    with SmtpPeer(username="mailer", password="p@ss word") as smtp:
        url = f"smtp://mailer:p%40ss%20word@127.0.0.1:{smtp.port}"
        DRIVER.run(params(), make_ctx(settings=smtp_settings(url)))
        assert smtp.received[0].login == "mailer"


def test_a_refused_login_fails_the_node_without_the_password(make_ctx: MakeContext) -> None:
    with SmtpPeer(username="mailer", password="right") as smtp:
        url = f"smtp://mailer:wrong-secret@127.0.0.1:{smtp.port}"
        with pytest.raises(PermanentDriverError) as raised:
            DRIVER.run(params(), make_ctx(settings=smtp_settings(url)))
    assert "refused the login (535)" in str(raised.value)
    assert "wrong-secret" not in str(raised.value)
    assert smtp.received == []


def test_starttls_is_used_when_the_server_offers_it(
    cert: SelfSignedCert, make_ctx: MakeContext
) -> None:
    with SmtpPeer(cert=cert, username="mailer", password="pw") as smtp:
        DRIVER.run(params(), make_ctx(settings=smtp_settings(smtp.url)))
        assert smtp.received[0].tls is True


def test_smtps_speaks_tls_from_the_start(cert: SelfSignedCert, make_ctx: MakeContext) -> None:
    with SmtpPeer(cert=cert, tls="implicit") as smtp:
        assert smtp.url.startswith("smtps://")
        DRIVER.run(params(), make_ctx(settings=smtp_settings(smtp.url)))
        assert smtp.received[0].tls is True


def test_an_untrusted_certificate_fails_the_node(tmp_path: Path, make_ctx: MakeContext) -> None:
    untrusted = self_signed_cert(tmp_path)  # SSL_CERT_FILE not set: the system CAs only
    expected = pytest.raises(PermanentDriverError, match=r"TLS with SMTP server 127\.0\.0\.1")
    with SmtpPeer(cert=untrusted) as smtp, expected:
        DRIVER.run(params(), make_ctx(settings=smtp_settings(smtp.url)))


def test_a_server_that_is_down_is_worth_a_retry(make_ctx: MakeContext) -> None:
    url = f"smtp://127.0.0.1:{free_port()}"
    with pytest.raises(RetryableDriverError, match=r"could not reach SMTP server 127\.0\.0\.1"):
        DRIVER.run(params(), make_ctx(settings=smtp_settings(url)))


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 Try again later", RetryableDriverError), ("554 Rejected", PermanentDriverError)],
)
def test_the_servers_answer_to_the_data_decides_retry_or_not(
    reply: str, error: type[Exception], make_ctx: MakeContext
) -> None:
    with SmtpPeer(data_reply=reply) as smtp, pytest.raises(error, match=reply.split()[0]):
        DRIVER.run(params(), make_ctx(settings=smtp_settings(smtp.url)))


def test_with_nothing_configured_the_message_goes_to_the_outbox(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    ctx = make_ctx(run_id="5a1e6d7e-0000-4000-8000-000000000001", node_id="email")
    output = DRIVER.run(params(html="<p>Hi</p>"), ctx)

    assert output["backend"] == "outbox"
    assert output["id"] == f"<{ctx.idempotency_key}@localhost>"
    with agent_sessions() as session:
        [stored] = session.scalars(select(OutboxMessage)).all()
    assert (stored.channel, str(stored.run_id), stored.node_id) == ("email", ctx.run_id, "email")
    assert stored.message["to"] == ["Ada Lovelace <ada@example.com>"]
    assert (stored.message["subject"], stored.message["body"]) == ("Welcome", "Hello Ada")
    assert stored.message["html"] == "<p>Hi</p>"
    assert output["outbox_id"] == stored.id


def test_the_outbox_keeps_one_message_per_node_however_often_it_runs(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    outputs = [DRIVER.run(params(), make_ctx(attempt=n)) for n in (1, 2, 3)]
    with agent_sessions() as session:
        assert len(session.scalars(select(OutboxMessage)).all()) == 1
    assert outputs[1] == outputs[2] == {**outputs[0], "replayed": True}


# --- credentials ----------------------------------------------------------------------------


def store(sessions: sessionmaker[Session], settings: Settings, name: str, value: Any) -> None:
    with sessions.begin() as session:
        put_credential(session, cipher_for(settings), "workflow", WORKFLOW_ID, name, value)


def test_a_stored_credential_names_the_server_and_the_sender(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session], settings: Settings
) -> None:
    with SmtpPeer(username="mailer", password="s3cret") as smtp:
        store(agent_sessions, settings, "mail", {"url": smtp.url, "from": "crm@example.org"})
        output = DRIVER.run(params(credential="mail"), make_ctx())
        assert smtp.received[0].login == "mailer"
        assert smtp.received[0].message["From"] == "crm@example.org"
    assert output["backend"] == "smtp"
    assert "s3cret" not in repr(output)


def test_a_credentials_server_must_be_allowlisted_like_any_address_a_workflow_names(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session], settings: Settings
) -> None:
    with SmtpPeer() as smtp:
        store(agent_sessions, settings, "mail", smtp.url)
        closed = Settings(encryption_key=ENCRYPTION_KEY, smtp_from=SENDER)  # no allowlist
        with pytest.raises(BlockedDestination, match="loopback"):
            DRIVER.run(params(credential="mail"), make_ctx(settings=closed))
        assert smtp.received == []


def test_a_missing_credential_fails_the_node_naming_it(make_ctx: MakeContext) -> None:
    with pytest.raises(PermanentDriverError, match="no credential 'nope' is stored for workflow"):
        DRIVER.run(params(credential="nope"), make_ctx())


def test_a_malformed_url_in_a_credential_is_not_echoed(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session], settings: Settings
) -> None:
    store(agent_sessions, settings, "mail", "http://user:hunter2@mail.example.com")
    with pytest.raises(PermanentDriverError) as raised:
        DRIVER.run(params(credential="mail"), make_ctx())
    assert "credential 'mail' must be an smtp:// or smtps:// URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


# --- header injection -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", "Hello\r\nBcc: victim@example.com"),
        ("subject", "Hello\nthere"),
        ("to", "ada@example.com\r\nBcc: victim@example.com"),
        ("cc", ["ok@example.com", "x@example.com\nBcc: victim@example.com"]),
        ("reply_to", "help@example.com\r\nX-Evil: 1"),
    ],
)
def test_line_breaks_in_a_header_value_are_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as raised:
        params(**{field: value})
    [error] = raised.value.errors()
    assert error["loc"][0] == field
    assert f"{field} contains a line break (CR or LF)" in error["msg"]
    assert "header injection" in error["msg"]


def test_a_body_may_have_as_many_lines_as_it_likes() -> None:
    assert params(body="line one\r\nline two\n").body == "line one\r\nline two\n"


def test_addresses_are_checked() -> None:
    with pytest.raises(ValidationError, match="to is not a valid email address"):
        params(to="not an address")
    assert params(to="a@example.com, B <b@example.com>").to == [
        "a@example.com",
        "B <b@example.com>",
    ]
