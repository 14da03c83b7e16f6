"""Refused webhook deliveries per address and per workflow: 429 with Retry-After before the
signature and the database, counted in a real Redis (database 7, flushed for each test)."""

from __future__ import annotations

import base64
import logging
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from app.config import Settings
from app.web import create_app
from app.web.context import WebContext
from app.web.rate_limits import KEY_PREFIX, RedisCounters, RefusalLimiter
from app.workflows import save_workflow
from tests.web.conftest import ADMIN_KEY, READ, READ_KEY, RecordingPublisher
from tests.web.factories import unique_id

LIMITS_DB = 7
PER_ADDRESS, PER_WORKFLOW = 5, 12
SECRET = "whsec_" + base64.b64encode(b"rate-limit-secret-32-bytes-long!").decode()
FORGED = "whsec_" + base64.b64encode(b"a-forger-guessing-32-bytes-long!").decode()
BODY = b'{"lead_id": "42"}'


class CommandLog(redis.Redis):
    """A real client that remembers the commands it sent (a pipeline is one round trip)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands.append(str(args[0]).upper())
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        self.commands.append("PIPELINE")
        return super().pipeline(transaction, shard_hint)


@pytest.fixture
def limits_url(redis_url: str) -> Iterator[str]:
    url = urlunsplit(urlsplit(redis_url)._replace(path=f"/{LIMITS_DB}"))
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def web_settings(database_url: str, limits_url: str) -> Settings:
    return Settings(
        DATABASE_URL=database_url,
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY},read:{READ_KEY}",
        CELERY_BROKER_URL=limits_url,
        DUALMCP_WEBHOOK_REFUSALS_PER_ADDRESS=str(PER_ADDRESS),
        DUALMCP_WEBHOOK_REFUSALS_PER_WORKFLOW=str(PER_WORKFLOW),
        DUALMCP_WEBHOOK_REFUSAL_WINDOW_S="60",
    )


@pytest.fixture
def broker(limits_url: str) -> Iterator[CommandLog]:
    client = CommandLog.from_url(limits_url)
    yield client
    client.close()


def make_client(
    settings: Settings, sessions: sessionmaker[Session], broker: redis.Redis
) -> FlaskClient:
    context = WebContext(settings=settings, sessions=sessions, publish=RecordingPublisher())
    context.broker_redis = broker  # the broker's client the web already has
    return create_app({"TESTING": True}, context=context).test_client()


@pytest.fixture
def client(
    web_settings: Settings, web_sessions: sessionmaker[Session], broker: CommandLog
) -> FlaskClient:
    return make_client(web_settings, web_sessions, broker)


def webhook(sessions: sessionmaker[Session]) -> str:
    workflow_id = unique_id("limited")
    with sessions.begin() as session:
        save_workflow(
            session,
            {
                "workflow_id": workflow_id,
                "trigger": {"type": "webhook", "secrets": [SECRET]},
                "nodes": [{"id": "n", "type": "transform", "params": {"values": {"ok": True}}}],
            },
        )
    return workflow_id


@pytest.fixture
def lead(web_sessions: sessionmaker[Session]) -> str:
    return webhook(web_sessions)


_messages = iter(range(1_000_000))


def signed(*, secret: str = SECRET, body: bytes = BODY) -> dict[str, str]:
    message_id = f"msg_{next(_messages)}"
    now = datetime.now(UTC)
    return {
        "Content-Type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body.decode()),
    }


def fire(
    client: FlaskClient,
    workflow_id: str,
    address: str,
    headers: dict[str, str],
    body: bytes = BODY,
) -> Any:
    return client.post(
        f"/api/triggers/webhook/{workflow_id}",
        data=body,
        headers=headers,
        environ_base={"REMOTE_ADDR": address},
    )


def flood(client: FlaskClient, workflow_id: str, address: str, times: int) -> list[int]:
    return [
        fire(client, workflow_id, address, signed(secret=FORGED)).status_code for _ in range(times)
    ]


# One address


def test_a_flood_of_bad_signatures_turns_into_429_with_retry_after(
    client: FlaskClient, lead: str
) -> None:
    assert flood(client, lead, "10.0.0.1", PER_ADDRESS) == [401] * PER_ADDRESS

    limited = fire(client, lead, "10.0.0.1", signed(secret=FORGED))

    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_a_signed_delivery_from_another_address_is_still_accepted(
    client: FlaskClient, lead: str
) -> None:
    flood(client, lead, "10.0.0.1", PER_ADDRESS)

    assert fire(client, lead, "10.0.0.2", signed()).status_code == 202


def test_a_signed_delivery_from_the_flooding_address_is_still_accepted(
    client: FlaskClient, lead: str
) -> None:
    """Past the limit a delivery is checked against the process's remembered copy of the
    workflow (no database): well-signed traffic is never limited."""
    flood(client, lead, "10.0.0.1", PER_ADDRESS)

    assert fire(client, lead, "10.0.0.1", signed()).status_code == 202
    assert fire(client, lead, "10.0.0.1", signed(secret=FORGED)).status_code == 429


def test_signed_deliveries_never_use_up_the_limit(client: FlaskClient, lead: str) -> None:
    many = 3 * PER_ADDRESS
    accepted = [fire(client, lead, "10.0.0.1", signed()).status_code for _ in range(many)]

    assert accepted == [202] * many
    assert flood(client, lead, "10.0.0.1", PER_ADDRESS) == [401] * PER_ADDRESS


def test_refusals_of_signed_deliveries_are_not_counted(client: FlaskClient, lead: str) -> None:
    bad_body = b'{"lead_id": '
    statuses = [
        fire(client, lead, "10.0.0.1", signed(body=bad_body), bad_body).status_code
        for _ in range(2 * PER_ADDRESS)
    ]

    assert statuses == [400] * (2 * PER_ADDRESS)


def test_probing_unknown_workflows_counts_against_the_address(client: FlaskClient) -> None:
    statuses = [
        fire(client, f"guess-{n}", "10.0.0.1", signed()).status_code for n in range(PER_ADDRESS + 1)
    ]

    assert statuses == [404] * PER_ADDRESS + [429]


def test_the_429_is_not_written_to_the_delivery_log(client: FlaskClient, lead: str) -> None:
    flood(client, lead, "10.0.0.1", PER_ADDRESS + 3)

    listed = client.get(f"/api/workflows/{lead}/deliveries", headers=READ).json["deliveries"]

    assert [d["status"] for d in listed] == [401] * PER_ADDRESS


# One workflow, many addresses


def test_a_workflow_flooded_from_many_addresses_is_limited_for_every_sender(
    client: FlaskClient, lead: str, web_sessions: sessionmaker[Session]
) -> None:
    for n in range(PER_WORKFLOW):
        assert flood(client, lead, f"10.0.1.{n}", 1) == [401]
    quiet = webhook(web_sessions)

    assert fire(client, lead, "10.0.2.1", signed(secret=FORGED)).status_code == 429
    assert fire(client, lead, "10.0.2.1", signed()).status_code == 202  # the real sender
    assert fire(client, quiet, "10.0.2.1", signed()).status_code == 202


# What it costs


def test_a_limited_request_costs_one_redis_read_and_no_database(
    client: FlaskClient, lead: str, broker: CommandLog, web_sessions: sessionmaker[Session]
) -> None:
    flood(client, lead, "10.0.0.1", PER_ADDRESS)
    statements: list[str] = []
    event.listen(
        web_sessions.kw["bind"], "before_cursor_execute", lambda *a: statements.append(a[2])
    )
    broker.commands.clear()

    assert fire(client, lead, "10.0.0.1", signed(secret=FORGED)).status_code == 429
    assert statements == []  # checked against the remembered copy of the workflow
    assert fire(client, "never-saved", "10.0.0.1", signed()).status_code == 429
    read_once = list(statements)  # an unknown workflow is read once...
    assert fire(client, "never-saved", "10.0.0.1", signed()).status_code == 429

    assert broker.commands == ["MGET"] * 3
    assert read_once and statements == read_once  # ...then remembered as unknown


def test_an_accepted_delivery_costs_no_redis_read_and_a_refusal_two_round_trips(
    client: FlaskClient, lead: str, broker: CommandLog
) -> None:
    fire(client, lead, "10.0.0.1", signed())  # the first request reads the workflow
    broker.commands.clear()

    assert fire(client, lead, "10.0.0.1", signed()).status_code == 202
    assert broker.commands == []  # signed for the process's copy: the limits are not read
    broker.commands.clear()
    assert fire(client, lead, "10.0.0.1", signed(secret=FORGED)).status_code == 401
    assert broker.commands == ["MGET", "PIPELINE"]


def test_counters_expire_with_their_window(broker: CommandLog) -> None:
    now = [6_000_030.0]
    limiter = RefusalLimiter(
        RedisCounters(broker), per_address=2, per_workflow=0, window_s=60, clock=lambda: now[0]
    )
    limiter.count("10.0.0.1", None)
    limiter.count("10.0.0.1", None)

    assert limiter.retry_after("10.0.0.1", None) == 30
    assert 0 < broker.ttl(f"{KEY_PREFIX}:100000:address:10.0.0.1") <= 31
    now[0] += 30
    assert limiter.retry_after("10.0.0.1", None) is None


# Redis down


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_without_redis_the_door_stays_open_with_one_warning(
    web_settings: Settings,
    web_sessions: sessionmaker[Session],
    lead: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = redis.Redis(host="127.0.0.1", port=_closed_port(), socket_connect_timeout=0.5)
    client = make_client(web_settings, web_sessions, down)
    caplog.set_level(logging.WARNING, logger="app.web.rate_limits")

    statuses = flood(client, lead, "10.0.0.1", 3 * PER_ADDRESS)

    assert statuses == [401] * (3 * PER_ADDRESS)
    assert fire(client, lead, "10.0.0.1", signed()).status_code == 202
    warnings = [r for r in caplog.records if r.name == "app.web.rate_limits"]
    assert [r.getMessage().split(":")[0] for r in warnings] == ["webhook refusal limits are off"]
    down.close()


# Behind a proxy


def test_behind_a_proxy_the_address_is_the_forwarded_one(
    web_settings: Settings, web_sessions: sessionmaker[Session], lead: str, broker: CommandLog
) -> None:
    proxied = make_client(web_settings.model_copy(update={"proxy_hops": 1}), web_sessions, broker)

    def through_proxy(sender: str, headers: dict[str, str]) -> int:
        answer = proxied.post(
            f"/api/triggers/webhook/{lead}",
            data=BODY,
            headers={**headers, "X-Forwarded-For": sender},
            environ_base={"REMOTE_ADDR": "10.9.9.9"},  # the proxy
        )
        return int(answer.status_code)

    statuses = [through_proxy("203.0.113.9", signed(secret=FORGED)) for _ in range(PER_ADDRESS)]

    forged = through_proxy("203.0.113.9", signed(secret=FORGED))
    assert [*statuses, forged] == [401] * PER_ADDRESS + [429]
    assert through_proxy("203.0.113.9", signed()) == 202
    assert through_proxy("203.0.113.10", signed()) == 202
    listed = proxied.get(f"/api/workflows/{lead}/deliveries", headers=READ).json["deliveries"]
    assert {d["source_address"] for d in listed if d["status"] == 401} == {"203.0.113.9"}


# Standalone (an in-memory broker)


def test_with_an_in_memory_broker_the_limits_hold_in_the_process(
    web_settings: Settings, web_sessions: sessionmaker[Session], lead: str
) -> None:
    settings = web_settings.model_copy(update={"celery_broker_url": "memory://"})
    context = WebContext(settings=settings, sessions=web_sessions, publish=RecordingPublisher())
    standalone = create_app({"TESTING": True}, context=context).test_client()

    assert flood(standalone, lead, "10.0.0.1", PER_ADDRESS + 1) == [401] * PER_ADDRESS + [429]


def test_a_limit_of_zero_is_no_limit(
    web_settings: Settings, web_sessions: sessionmaker[Session], lead: str, broker: CommandLog
) -> None:
    settings = web_settings.model_copy(
        update={"webhook_refusals_per_address": 0, "webhook_refusals_per_workflow": 0}
    )
    unlimited = make_client(settings, web_sessions, broker)

    assert flood(unlimited, lead, "10.0.0.1", 2 * PER_ADDRESS) == [401] * (2 * PER_ADDRESS)
    assert broker.commands == []  # nothing read, nothing counted
