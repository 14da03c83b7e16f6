"""A stopping worker hands its node back; a completion waits out a database restart."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import NodeRun
from app.workflows import NodeRef, save_workflow, start_run
from app.workflows.completion import complete_with_retry
from app.workflows.execution import Outcome, lease_node
from app.workflows.handback import hand_back, interrupt
from app.workflows.invoke import execute_node
from tests.http_peer import HttpPeer


def _slow_call(url: str) -> dict[str, Any]:
    return {
        "workflow_id": "slow-call",
        "nodes": [
            {"id": "call", "type": "http_request", "params": {"url": url}, "next": "after"},
            {"id": "after", "type": "transform", "params": {"values": {"done": True}}},
        ],
    }


def _start(sessions: sessionmaker[Session], definition: dict[str, Any]) -> str:
    with sessions.begin() as session:
        save_workflow(session, definition)
        return start_run(session, definition["workflow_id"], {}).run_id


def _node(sessions: sessionmaker[Session], run_id: str, node_id: str) -> NodeRun:
    import uuid

    with sessions() as session:
        row = session.get(NodeRun, (uuid.UUID(run_id), node_id))
        assert row is not None
        return row


@contextmanager
def sigterm_interrupts_the_driver() -> Iterator[None]:
    """What a worker's pool child installs (app/tasks/shutdown.py), minus killing itself."""
    previous = signal.signal(signal.SIGTERM, lambda *_: interrupt())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_interrupt_outside_a_driver_does_nothing() -> None:
    assert interrupt() is False


def test_a_handed_back_node_is_pending_and_its_attempt_not_counted(
    sessions: sessionmaker, settings: Settings
) -> None:
    run_id = _start(sessions, _slow_call("http://127.0.0.1:9/never"))
    with sessions.begin() as session:
        lease = lease_node(session, run_id, "call", settings)
    assert lease is not None and lease.attempt == 1

    with sessions.begin() as session:
        assert hand_back(session, lease) is True
        assert hand_back(session, lease) is False  # already handed back: nothing to do

    row = _node(sessions, run_id, "call")
    assert (row.status, row.attempt, row.redeliveries, row.lease_expires_at) == (
        "pending",
        0,
        0,
        None,
    )


def test_sigterm_during_a_driver_call_hands_the_node_back_for_another_worker(
    sessions: sessionmaker, settings: Settings, http: httpx.Client, http_peer: HttpPeer
) -> None:
    http_peer.reply("/handback/slow", json={"ok": True}, delay_s=5)
    run_id = _start(sessions, _slow_call(f"{http_peer.url}/handback/slow"))
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM))

    with sigterm_interrupts_the_driver():
        timer.start()
        to_publish = execute_node(sessions, settings, http, NodeRef(run_id, "call"))
    timer.join()

    assert to_publish == [NodeRef(run_id, "call")]
    assert (_node(sessions, run_id, "call").status, _node(sessions, run_id, "call").attempt) == (
        "pending",
        0,
    )
    http_peer.reply("/handback/slow", json={"ok": True})
    assert execute_node(sessions, settings, http, NodeRef(run_id, "call")) == []
    assert _node(sessions, run_id, "after").status == "succeeded"  # the next worker finished it
    assert _node(sessions, run_id, "call").attempt == 1


class FlakyDatabase:
    """A session factory whose first `failures` transactions find PostgreSQL gone."""

    def __init__(self, sessions: sessionmaker[Session], failures: int) -> None:
        self.sessions, self.failures = sessions, failures
        self.kw = sessions.kw  # what the factory is bound to: the completion picks its writer

    def begin(self) -> Any:
        self._fail()
        return self.sessions.begin()

    def __call__(self) -> Session:
        """A session for statements that commit one by one (PostgreSQL's one-statement path)."""
        self._fail()
        return self.sessions()

    def _fail(self) -> None:
        if self.failures:
            self.failures -= 1
            raise OperationalError("COMMIT", {}, Exception("server closed the connection"))


def test_a_completion_waits_for_the_database_instead_of_running_the_driver_again(
    sessions: sessionmaker, settings: Settings
) -> None:
    run_id = _start(sessions, _slow_call("http://127.0.0.1:9/never"))
    with sessions.begin() as session:
        lease = lease_node(session, run_id, "call", settings)
    assert lease is not None
    flaky = FlakyDatabase(sessions, failures=2)

    complete_with_retry(flaky, lease, Outcome(succeeded=True, output={}), settings)  # type: ignore[arg-type]

    assert flaky.failures == 0
    assert _node(sessions, run_id, "call").status == "succeeded"


def test_a_completion_gives_up_when_the_database_stays_away(
    sessions: sessionmaker, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("app.workflows.completion.COMPLETION_RETRY_S", 0.3)
    run_id = _start(sessions, _slow_call("http://127.0.0.1:9/never"))
    with sessions.begin() as session:
        lease = lease_node(session, run_id, "call", settings)
    assert lease is not None

    with pytest.raises(OperationalError):
        complete_with_retry(
            FlakyDatabase(sessions, failures=100),  # type: ignore[arg-type]
            lease,
            Outcome(succeeded=True, output={}),
            settings,
        )
