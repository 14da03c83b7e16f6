"""A worker SIGKILLed while holding reserved, unclaimed messages: every run still finishes
within the visibility timeout plus a few seconds of the kill (issue 13, section 3).

Such a message lives only in Redis' `unacked` hash (PostgreSQL still says `pending`), and comes
back when a live worker's consumer sweeps that hash: the sweep restores what was delivered more
than the visibility timeout ago, and app/tasks/celery_app.py runs it every tenth of the timeout
(kombu's default of about 100 s left such runs queued for two minutes). This stack has no beat,
its own database and its own broker, so no sweeper republishes the nodes and no other worker
takes them: the broker's restore is the only way back.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from sqlalchemy import select

from app.config import Settings
from app.models import NodeRun, WorkflowRun, make_engine, make_session_factory
from app.tasks.celery_app import NODES_QUEUE, RUNS_QUEUE, make_celery
from app.workflows import save_workflow, start_run
from tests.http_peer import HttpPeer
from tests.integration.conftest import (
    STACK_ENV,
    Stack,
    empty_redis_database,
    own_database,
)

#: 15 s as in the issue: long enough that the second worker is up (a few seconds) before the
#: messages are due, so its sweep at start restores nothing and only the periodic sweep (every
#: 1 s here) can bring them back in time.
VISIBILITY_TIMEOUT = 15
#: Kill to the last run finished, past the visibility timeout: the sweep period (1 s), the pick
#: up, four short runs, and slack for a loaded 2-core box (measured: 0.5 to 1.5 s).
MARGIN_S = 5
#: With one pool process and a prefetch of 4, the blocker runs and three wait reserved.
RESERVED = 3
QUEUES = f"{NODES_QUEUE},{RUNS_QUEUE}"


class CrashStack(Stack):
    """A stack whose first worker reserves more messages than its one process can run."""

    def start_reserving_worker(self, name: str) -> subprocess.Popen[bytes]:
        """One pool process; its main process reserves up to four messages (the app's prefetch
        multiplier of 1 would reserve none while the process is busy)."""
        worker = self._celery(
            name,
            "worker",
            "-Q",
            QUEUES,
            "--concurrency=1",
            "--prefetch-multiplier=4",
            f"--hostname={name}@%h",
        )
        self.queue_workers.append(worker)
        self._wait_ready(self.logs / f"{name}.log", b"ready.", worker)
        return worker


@pytest.fixture
def crash_stack(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrashStack]:
    with (
        own_database(postgres_url, "dualmcp_crash") as database_url,
        empty_redis_database(redis_url) as broker_url,
    ):
        env = {
            **os.environ,
            **STACK_ENV,
            "DATABASE_URL": database_url,
            "REDIS_URL": broker_url,
            "DUALMCP_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        }
        engine = make_engine(database_url)
        stack = CrashStack(env, make_session_factory(engine), tmp_path_factory.mktemp("crash"))
        try:
            yield stack
        finally:
            stack.stop()
            engine.dispose()


def test_runs_a_killed_worker_had_reserved_finish_within_the_visibility_timeout(
    crash_stack: CrashStack, http_peer: HttpPeer
) -> None:
    stack = crash_stack
    broker = redis.Redis.from_url(stack.env["REDIS_URL"])
    # Our own publisher on the stack's broker (the test process's app publishes to REDIS_URL).
    publisher = make_celery(Settings(redis_url=stack.env["REDIS_URL"]))
    try:
        http_peer.reply("/crash/block", json={"ok": True}, delay_s=8)
        blocker = _start(stack, publisher, _workflow("crash-block", "/crash/block", http_peer))
        reserved_definition = _workflow("crash-reserved", "/crash/reserved", http_peer)

        first = stack.start_reserving_worker("reserving")
        stack.wait_for(lambda: http_peer.requests_to("/crash/block"), 30, what="the blocker")
        reserved = [_start(stack, publisher, reserved_definition) for _ in range(RESERVED)]
        stack.wait_for(
            lambda: broker.hlen("unacked") == RESERVED + 1, 5, what="the worker to reserve all"
        )
        stack.kill_queue_worker(first)
        killed_at = datetime.now(UTC)

        # Reserved but never claimed: PostgreSQL still has them pending, and Redis has them only
        # in the unacked hash, none in a queue.
        assert _node_statuses(stack, reserved) == ["pending"] * RESERVED, stack.tail_logs()
        assert broker.hlen("unacked") == RESERVED + 1
        assert broker.llen(NODES_QUEUE) == broker.llen(RUNS_QUEUE) == 0
        assert not http_peer.requests_to("/crash/reserved")

        http_peer.reply("/crash/block", json={"ok": True})  # the blocker's rerun answers at once
        stack.start_queue_worker(QUEUES, "second", concurrency=2)
        finished = [
            _finished(stack, run_id, timeout=VISIBILITY_TIMEOUT + 20)
            for run_id in [blocker, *reserved]
        ]
    finally:
        publisher.close()
        broker.close()

    assert [status for status, _ in finished] == ["succeeded"] * (RESERVED + 1), stack.tail_logs()
    late = max((finished_at - killed_at).total_seconds() for _, finished_at in finished)
    assert late <= VISIBILITY_TIMEOUT + MARGIN_S, f"last run finished {late:.1f} s after the kill"
    # Restored once, so each reserved run called the peer once.
    calls = sorted(request.path for request in http_peer.requests_to("/crash/reserved"))
    assert calls == sorted(f"/crash/reserved?run={run_id}" for run_id in reserved)


def _workflow(workflow_id: str, path: str, peer: HttpPeer) -> dict[str, Any]:
    """One http_request to the peer, its timeout short enough that a lost claim's lease (plus
    the 1 s grace) has expired when the message comes back."""
    return {
        "workflow_id": workflow_id,
        "nodes": [
            {
                "id": "call",
                "type": "http_request",
                "params": {"url": f"{peer.url}{path}", "query": {"run": "{{ run.id }}"}},
                "timeout_s": 10,
            }
        ],
    }


def _start(stack: Stack, publisher: Any, definition: dict[str, Any]) -> str:
    """Save the workflow, start a run, publish its first node on the stack's broker."""
    with stack.sessions.begin() as session:
        save_workflow(session, definition)
        started = start_run(session, definition["workflow_id"], {})
    for ref in started.to_publish:
        publisher.send_task("dualmcp.run_node", args=(ref.run_id, ref.node_id), queue=RUNS_QUEUE)
    return started.run_id


def _node_statuses(stack: Stack, run_ids: list[str]) -> list[str]:
    with stack.sessions() as session:
        return [
            session.scalars(select(NodeRun.status).where(NodeRun.run_id == run_id)).one()
            for run_id in run_ids
        ]


def _finished(stack: Stack, run_id: str, timeout: float) -> tuple[str, datetime]:
    """The run's final status and when it finished, once it has."""

    def check() -> tuple[str, datetime] | None:
        with stack.sessions() as session:
            run = session.get(WorkflowRun, uuid.UUID(run_id))
            if run is None or run.finished_at is None:
                return None
            return run.status, run.finished_at

    finished: tuple[str, datetime] = stack.wait_for(check, timeout, what=f"run {run_id} to end")
    return finished
