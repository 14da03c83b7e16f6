"""GET /api/runs/<id>/events (issue 15): a run's changes as Server-Sent Events, read with httpx
through real HTTP servers on loopback: waitress in a thread (as `dualmcp standalone` serves),
and gunicorn with threads (as compose serves), where a stream holds a thread and the streams
of one process are bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker
from waitress import create_server

from app.config import Settings
from app.models import NodeRun, utcnow
from app.web import create_app
from app.web.context import WebContext
from app.web.run_events import run_events
from app.workflows.execution import lease_node
from tests.web.conftest import (
    ENCRYPTION_KEY,
    READ,
    READ_KEY,
    RecordingPublisher,
    web_test_settings,
)
from tests.web.factories import drive, save, start, two_step

#: The run contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

REPO = Path(__file__).resolve().parents[2]
Event = tuple[str, Any]


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    return web_test_settings(
        database_url, DUALMCP_RUN_EVENTS_MAX_STREAMS=1, DUALMCP_RUN_EVENTS_MAX_S=10
    )


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """The app behind waitress on a free loopback port; yields its URL."""
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.trigger.pull_trigger(server.close)  # closed in its own loop
        thread.join(timeout=10)
        server.task_dispatcher.shutdown()


@pytest.fixture
def url(app: Flask) -> Iterator[str]:
    with serving(app) as base:
        yield base


def events_of(response: httpx.Response) -> Iterator[Event]:
    """(event, data as JSON) per event, ("comment", text) per comment line, as they arrive."""
    name, data = None, []
    for line in response.iter_lines():
        if line.startswith(":"):
            yield "comment", line[1:].strip()
        elif line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif not line and name is not None:
            yield name, json.loads("\n".join(data))
            name, data = None, []


def until(events: Iterator[Event], name: str) -> list[Event]:
    """Events up to and including the next `name`."""
    seen = []
    for event in events:
        seen.append(event)
        if event[0] == name:
            return seen
    raise AssertionError(f"the stream closed before a {name!r} event: {seen}")


def test_a_finished_runs_stream_is_its_end_alone(
    url: str, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))
    drive(web_sessions, web_settings, started.to_publish)

    with httpx.stream("GET", f"{url}/api/runs/{started.run_id}/events", headers=READ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = list(events_of(answer))

    assert [name for name, _ in events] == ["end"]
    run = events[0][1]
    assert run["status"] == "succeeded"
    assert [node["status"] for node in run["nodes"]] == ["succeeded", "succeeded"]


def test_the_stream_follows_the_run_then_ends_with_the_whole_run(
    url: str, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))

    with httpx.stream(
        "GET", f"{url}/api/runs/{started.run_id}/events", headers=READ, timeout=10
    ) as answer:
        events = events_of(answer)
        snapshot = next(events)
        with web_sessions.begin() as session:  # a worker takes the first node, then is lost
            assert lease_node(session, started.run_id, "first", web_settings) is not None
        taken = until(events, "run")
        _expire_leases(web_sessions)
        drive(web_sessions, web_settings, started.to_publish)  # delivered again: it goes on
        rest = list(events)

    assert snapshot[0] == "run" and snapshot[1]["status"] == "queued"
    assert [node["status"] for node in snapshot[1]["nodes"]] == ["pending", "not_started"]
    assert taken == [("node", taken[0][1]), ("run", taken[1][1])]
    assert (taken[0][1]["node_id"], taken[0][1]["status"], taken[0][1]["attempt"]) == (
        "first",
        "running",
        1,
    )
    assert taken[1][1]["status"] == "running"
    assert rest[-1][0] == "end"
    assert all(name == "node" for name, _ in rest[:-1])
    end = rest[-1][1]
    assert end["status"] == "succeeded"
    first = end["nodes"][0]
    assert (first["attempt"], [a["attempt"] for a in first["attempts"]]) == (2, [1])
    last_seen = {data["node_id"]: data["status"] for _, data in rest[:-1]}
    assert last_seen == {"first": "succeeded", "last": "succeeded"}


def test_past_the_streams_a_process_serves_the_answer_is_503_with_retry_after(
    url: str, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))
    path = f"{url}/api/runs/{started.run_id}/events"

    with httpx.stream("GET", path, headers=READ, timeout=10) as held:
        events = events_of(held)
        assert next(events)[0] == "run"
        refused = httpx.get(path, headers=READ, timeout=10)
        drive(web_sessions, web_settings, started.to_publish)
        assert list(events)[-1][0] == "end"

    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "too_many_streams"
    assert int(refused.headers["Retry-After"]) > 0
    assert _eventually_ok(path)  # the slot came back when the first stream closed


def test_an_unknown_run_is_a_404_and_gives_its_slot_back(
    url: str, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))
    drive(web_sessions, web_settings, started.to_publish)

    unknown = httpx.get(f"{url}/api/runs/00000000-0000-0000-0000-000000000000/events", headers=READ)
    known = httpx.get(f"{url}/api/runs/{started.run_id}/events", headers=READ)

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert known.status_code == 200


def test_the_stream_needs_an_api_key(url: str, web_sessions: sessionmaker[Session]) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id

    assert httpx.get(f"{url}/api/runs/{run_id}/events").status_code == 401


def test_a_stream_closes_after_its_longest_duration_without_an_end(
    web_settings: Settings, web_sessions: sessionmaker[Session]
) -> None:
    settings = web_settings.model_copy(update={"run_events_max_s": 1.0})
    context = WebContext(settings=settings, sessions=web_sessions, publish=RecordingPublisher())
    app = create_app({"TESTING": True}, context=context)
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id

    with serving(app) as base:
        began = time.monotonic()
        with httpx.stream("GET", f"{base}/api/runs/{run_id}/events", headers=READ) as answer:
            names = [name for name, _ in events_of(answer)]
        lasted = time.monotonic() - began

    assert names == ["run"]
    assert 0.9 <= lasted < 5


def test_a_quiet_stream_sends_heartbeats() -> None:
    run = {"status": "running", "nodes": [], "run_id": "r", "workflow_id": "w"}
    run |= {"workflow_version": 1, "created_at": "2030-01-01T00:00:00Z"}
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    text = "".join(
        run_events(
            lambda: run,
            run,
            max_s=40,
            poll_s=0.5,
            heartbeat_s=15,
            clock=lambda: now[0],
            sleep=sleep,
        )
    )

    assert text.count(": heartbeat\n\n") == 2  # at 15 s and 30 s of silence
    assert "event: end" not in text


def test_under_gunicorn_threads_a_stream_holds_a_slot_and_gives_it_back(
    web_settings: Settings, web_sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    started = start(web_sessions, save(web_sessions, two_step()))

    with gunicorn(web_settings, tmp_path / "gunicorn.log") as base:
        path = f"{base}/api/runs/{started.run_id}/events"
        with httpx.stream("GET", path, headers=READ, timeout=10) as held:
            events = events_of(held)
            assert next(events)[0] == "run"
            refused = httpx.get(path, headers=READ, timeout=10)
            other = httpx.get(f"{base}/api/runs/{started.run_id}", headers=READ, timeout=10)
            drive(web_sessions, web_settings, started.to_publish)
            assert list(events)[-1][0] == "end"
        assert _eventually_ok(path)

    assert refused.status_code == 503 and "Retry-After" in refused.headers
    assert other.status_code == 200  # the API is served beside the stream


@contextmanager
def gunicorn(settings: Settings, log_path: Path) -> Iterator[str]:
    """gunicorn (gthread: one worker, 4 threads) with the production settings module, serving
    `app.web:create_app()` from the environment, on a socket bound to 127.0.0.1:0 here."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "CELERY_BROKER_URL": "memory://",
        "DUALMCP_API_KEYS": f"read:{READ_KEY}",
        "DUALMCP_RUN_EVENTS_MAX_STREAMS": "1",
        "DUALMCP_RUN_EVENTS_MAX_S": "10",
        "WEB_CONCURRENCY": "1",
        "DUALMCP_ENCRYPTION_KEY": ENCRYPTION_KEY,  # gunicorn's config refuses to start without
    }
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:app.web.gunicorn_conf",
                f"--bind=fd://{listener.fileno()}",
                "--workers=1",
                "--threads=4",
                "app.web:create_app()",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=[listener.fileno()],
            start_new_session=True,  # its worker too can be killed as a group
        )
    listener.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{base}/healthz"):
            assert server.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield base
    finally:
        server.send_signal(signal.SIGINT)  # quick shutdown
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:  # a stream's thread keeps the worker: no need to wait
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _eventually_ok(path: str) -> bool:
    """A slot is given back when the server closes the response, just after the client read
    its end: a few tries."""
    for _ in range(50):
        if httpx.get(path, headers=READ, timeout=10).status_code == 200:
            return True
        time.sleep(0.05)
    return False


def _expire_leases(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(update(NodeRun).values(lease_expires_at=utcnow() - timedelta(minutes=1)))
