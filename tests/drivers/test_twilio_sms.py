"""twilio_sms with the real twilio SDK against a local server speaking the Messages API."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.credentials import cipher_for, put_credential
from app.drivers import get_driver, param_schemas
from app.drivers.twilio_sms import TwilioSmsDriver
from app.engine.validation import validate_definition
from app.errors import BlockedDestination, PermanentDriverError, RetryableDriverError
from app.models import OutboxMessage
from app.safe_http import make_http_client
from tests.drivers.conftest import ENCRYPTION_KEY, WORKFLOW_ID, MakeContext
from tests.messaging_peers import TwilioPeer

DRIVER = get_driver("twilio_sms")
SID, TOKEN = "AC" + "1" * 32, "twilio-auth-token-123"
CUSTOMER, COMPANY = "+14155552671", "+15005550006"


def params(**overrides: Any) -> TwilioSmsDriver.Params:
    return TwilioSmsDriver.Params.model_validate({"to": CUSTOMER, "body": "Hi!", **overrides})


def twilio_settings(peer: TwilioPeer, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "http_allowlist": "127.0.0.1",
        "encryption_key": ENCRYPTION_KEY,
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from_number": COMPANY,
        "twilio_api_base": peer.url,
        **extra,
    }
    return Settings(**values)


@pytest.fixture
def twilio() -> Iterator[TwilioPeer]:
    with TwilioPeer(SID, TOKEN) as peer:
        yield peer


def test_sends_the_form_fields_with_basic_auth_and_outputs_the_sid(
    twilio: TwilioPeer, make_ctx: MakeContext
) -> None:
    ctx = make_ctx(settings=twilio_settings(twilio))
    output = DRIVER.run(params(), ctx)

    assert twilio.sent == [{"To": CUSTOMER, "From": COMPANY, "Body": "Hi!"}]
    [request] = twilio.requests
    assert request.route == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert (
        request.headers["authorization"]
        == "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    )
    assert request.headers["idempotency-key"] == ctx.idempotency_key
    assert output == {
        "backend": "twilio",
        "id": twilio.sids[0],
        "sid": twilio.sids[0],
        "status": "queued",
        "to": CUSTOMER,
    }


def test_a_rerun_of_the_node_sends_no_second_sms(twilio: TwilioPeer, make_ctx: MakeContext) -> None:
    settings = twilio_settings(twilio)
    first = DRIVER.run(params(), make_ctx(settings=settings, attempt=1))
    again = DRIVER.run(params(), make_ctx(settings=settings, attempt=2))
    assert len(twilio.sent) == 1
    assert again == {**first, "replayed": True}


def test_from_in_the_params_overrides_the_setting(
    twilio: TwilioPeer, make_ctx: MakeContext
) -> None:
    DRIVER.run(params(**{"from": "+447700900123"}), make_ctx(settings=twilio_settings(twilio)))
    assert twilio.sent[0]["From"] == "+447700900123"


def test_a_wrong_token_fails_the_node_without_quoting_it(make_ctx: MakeContext) -> None:
    with TwilioPeer(SID, "the-real-token") as twilio, pytest.raises(PermanentDriverError) as raised:
        DRIVER.run(params(), make_ctx(settings=twilio_settings(twilio)))
    assert str(raised.value) == (
        "Twilio answered 401 (error 20003): Unable to create record: Authenticate"
    )
    assert TOKEN not in str(raised.value)


def test_an_outage_is_worth_a_retry_and_nothing_is_recorded(make_ctx: MakeContext) -> None:
    with TwilioPeer(SID, TOKEN, fail_times=1) as twilio:
        settings = twilio_settings(twilio)
        with pytest.raises(RetryableDriverError, match="Twilio answered 503"):
            DRIVER.run(params(), make_ctx(settings=settings, attempt=1))
        output = DRIVER.run(params(), make_ctx(settings=settings, attempt=2))
        assert len(twilio.sent) == 1
    assert "replayed" not in output


def test_with_nothing_configured_the_sms_goes_to_the_outbox(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session]
) -> None:
    output = DRIVER.run(params(), make_ctx(node_id="sms"))
    with agent_sessions() as session:
        [stored] = session.scalars(select(OutboxMessage)).all()
    assert output == {
        "backend": "outbox",
        "id": f"outbox-{stored.id}",
        "outbox_id": stored.id,
        "to": CUSTOMER,
    }
    assert (stored.channel, stored.node_id) == ("sms", "sms")
    assert stored.message == {"from": None, "to": CUSTOMER, "body": "Hi!"}


def test_a_stored_credential_names_the_account_and_its_server(
    twilio: TwilioPeer,
    make_ctx: MakeContext,
    agent_sessions: sessionmaker[Session],
    settings: Settings,
) -> None:
    account = {
        "account_sid": SID,
        "auth_token": TOKEN,
        "from_number": COMPANY,
        "api_base": twilio.url,
    }
    with agent_sessions.begin() as session:
        put_credential(session, cipher_for(settings), "workflow", WORKFLOW_ID, "sms", account)
    output = DRIVER.run(params(credential="sms"), make_ctx())
    assert output["backend"] == "twilio"
    assert twilio.sent == [{"To": CUSTOMER, "From": COMPANY, "Body": "Hi!"}]

    closed = Settings(encryption_key=ENCRYPTION_KEY)  # loopback not allowlisted
    with make_http_client(closed) as guarded, pytest.raises(BlockedDestination):
        DRIVER.run(params(credential="sms"), make_ctx(settings=closed, http=guarded, node_id="x"))


def test_a_credential_missing_fields_is_named_without_values(
    make_ctx: MakeContext, agent_sessions: sessionmaker[Session], settings: Settings
) -> None:
    with agent_sessions.begin() as session:
        put_credential(
            session, cipher_for(settings), "workflow", WORKFLOW_ID, "sms", {"account_sid": SID}
        )
    with pytest.raises(PermanentDriverError, match="credential 'sms' lacks auth_token"):
        DRIVER.run(params(credential="sms"), make_ctx())


@pytest.mark.parametrize(
    "number", ["4155552671", "+04155552671", "+1 415 555 2671", "+1234567890123456"]
)
def test_numbers_must_be_e164(number: str) -> None:
    with pytest.raises(ValidationError, match=r"to must be an E\.164 phone number"):
        params(to=number)
    with pytest.raises(ValidationError, match=r"from must be an E\.164 phone number"):
        params(**{"from": number})


def test_a_literal_number_is_checked_when_the_workflow_is_saved() -> None:
    definition = {
        "workflow_id": "sms",
        "nodes": [
            {
                "id": "bad",
                "type": "twilio_sms",
                "params": {"to": "555-0100", "body": "x"},
                "next": "ok",
            },
            {
                "id": "ok",
                "type": "twilio_sms",
                "params": {"to": "{{ trigger.phone }}", "body": "x"},
            },
        ],
    }
    _definition, problems = validate_definition(definition, param_schemas())
    assert [(p.code, p.path) for p in problems] == [("invalid_params", "nodes[0].params.to")]
