"""X-Request-ID: echoed or made, in every log line of the request, carried by its node messages."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from kombu import Queue
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.logs import JsonFormatter, RedactingFilter
from app.tasks.celery_app import RUNS_QUEUE
from app.tasks.dispatch import Dispatcher
from app.web import create_app
from app.web.context import WebContext
from tests.web.conftest import ADMIN
from tests.web.factories import save, two_step

NEW_ID = re.compile(r"[0-9a-f]{32}")


def test_the_answer_carries_the_callers_request_id(client: FlaskClient) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.9_x"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.9_x"


@pytest.mark.parametrize("sent", [None, "", "two words", "a" * 129, "id\u00e9", "x;y"])
def test_a_missing_or_unsafe_request_id_is_replaced_by_a_new_one(
    client: FlaskClient, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    answered = client.get("/healthz", headers=headers).headers["X-Request-ID"]
    assert NEW_ID.fullmatch(answered)
    assert client.get("/healthz", headers=headers).headers["X-Request-ID"] != answered


def test_an_error_answer_carries_the_request_id_too(client: FlaskClient) -> None:
    response = client.get("/api/no-such-thing", headers={"X-Request-ID": "req-404"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "req-404"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.request_id")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)


def test_every_log_line_of_a_request_carries_its_id_and_no_other_does(
    app: Flask, json_lines: io.StringIO
) -> None:
    def chatty() -> str:
        logging.getLogger("tests.request_id").info("first")
        logging.getLogger("tests.request_id").warning("second")
        return "ok"

    app.add_url_rule("/_chatty", view_func=chatty)
    client = app.test_client()
    client.get("/_chatty", headers={"X-Request-ID": "req-1"})
    client.get("/_chatty", headers={"X-Request-ID": "req-2"})
    logging.getLogger("tests.request_id").info("outside any request")

    lines = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    assert [(line["message"], line.get("request_id")) for line in lines] == [
        ("first", "req-1"),
        ("second", "req-1"),
        ("first", "req-2"),
        ("second", "req-2"),
        ("outside any request", None),
    ]


def test_the_node_message_of_a_trigger_carries_the_request_id(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    """Through the real Dispatcher and a Celery app (kombu's in-memory broker): the header the
    node task reads its request id from (app/tasks/nodes.py)."""
    celery = Celery("request-id-test", broker="memory://")
    dispatcher = Dispatcher(celery, web_sessions)
    context = WebContext(settings=web_settings, sessions=web_sessions, publish=dispatcher.publish)
    client = create_app({"TESTING": True}, context=context).test_client()
    workflow_id = save(web_sessions, two_step())
    with celery.connection_for_write() as connection:
        queue = connection.SimpleQueue(Queue(RUNS_QUEUE))
        response = client.post(
            "/api/workflow/execute",
            json={"workflow_id": workflow_id, "input": {}},
            headers={**ADMIN, "X-Request-ID": "trigger-42"},
        )
        assert response.status_code == 202
        message = queue.get(timeout=2)
        queue.close()
    assert message.headers["task"] == "dualmcp.run_node"
    assert message.headers["request_id"] == "trigger-42"
    assert message.headers["argsrepr"] == repr((response.json["run_id"], "first"))


def test_the_run_a_request_starts_names_it(client: FlaskClient) -> None:
    """GET /api/runs/<id> says which request started the run (origin.request_id): the id to
    look for in the web's and the nodes' logs."""
    workflow_id = "request-id-run"
    created = client.post("/api/workflows", json=two_step(workflow_id), headers=ADMIN)
    assert created.status_code == 201
    started = client.post(
        "/api/workflow/execute",
        json={"workflow_id": workflow_id, "input": {}},
        headers={**ADMIN, "X-Request-ID": "run-starter-7"},
    )
    assert started.status_code == 202 and started.json is not None
    run = client.get(f"/api/runs/{started.json['run_id']}", headers=ADMIN).json
    assert run is not None and run["origin"] == {"request_id": "run-starter-7"}
