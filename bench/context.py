"""What every scenario gets: the running stack, the plan, and ways to start and time runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy
from sqlalchemy.orm import Session, sessionmaker

from bench.costs import Reading, take_reading
from bench.plan import Plan
from bench.stack import BenchError, Stack

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True)
class RunTimes:
    """A run's status and times (epoch seconds, from PostgreSQL)."""

    status: str
    created: float
    started: float | None
    finished: float | None


@dataclass
class Bench:
    plan: Plan
    stack: Stack
    workdir: Path
    profile: bool = False
    #: The issue's keys (and a few more), filled in by the scenarios.
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Per-scenario details: counts, breakdowns, costs.
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    _api: httpx.Client | None = None
    _sessions: sessionmaker[Session] | None = None
    _roots: dict[str, int] | None = None

    @property
    def api(self) -> httpx.Client:
        """The front end, as the admin."""
        if self._api is None:
            self._api = httpx.Client(
                base_url=self.stack.web_url,
                headers={"Authorization": f"Bearer {self.stack.admin_key}"},
                timeout=30,
            )
        return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()

    def reading(self, *, tasks: bool = True) -> Reading:
        if self._roots is None:
            self._roots = self.stack.cpu_roots()
        return take_reading(self.stack, self._roots, tasks=tasks)

    def put_workflow(self, definition: dict[str, Any]) -> None:
        """Create or update a workflow through the API (validated like a user's)."""
        response = self.api.put(f"/api/workflows/{definition['workflow_id']}", json=definition)
        if response.status_code >= 300:
            raise BenchError(f"saving {definition['workflow_id']}: {response.text[:500]}")

    def start_run(self, workflow_id: str, payload: Any) -> str:
        """Start a run as the front end does (one transaction, then publish), from here, so a
        latency series does not include an HTTP request."""
        return self.start_runs(workflow_id, [payload])[0]

    def start_runs(self, workflow_id: str, payloads: list[Any]) -> list[str]:
        """Start one run per payload in one transaction, then publish them all."""
        from app.models import make_engine, make_session_factory
        from app.tasks.runtime import publish
        from app.workflows import start_run

        if self._sessions is None:
            self._sessions = make_session_factory(make_engine(self.stack.superuser_url))
        with self._sessions.begin() as session:
            started = [start_run(session, workflow_id, payload) for payload in payloads]
        publish([ref for run in started for ref in run.to_publish])
        return [run.run_id for run in started]

    @contextmanager
    def workers_paused(self) -> Iterator[None]:
        """The dualmcp worker consumes none of its queues inside (Celery's cancel_consumer), so
        work piles up in the broker; beat's sweeper (a task on those queues) pauses with it."""
        from app.tasks import celery

        hostname = self.stack.worker_hostname
        control = celery.control
        replies: Any = control.inspect(destination=[hostname], timeout=5).active_queues()
        queues = [queue["name"] for queue in (replies or {}).get(hostname) or []]
        if not queues:
            raise BenchError("the worker did not say which queues it consumes")
        for queue in queues:
            if not control.cancel_consumer(queue, destination=[hostname], reply=True, timeout=5):
                raise BenchError(f"the worker did not stop consuming {queue}")
        try:
            yield
        finally:
            for queue in queues:
                control.add_consumer(queue, destination=[hostname], reply=True, timeout=5)

    def queued_messages(self) -> int | None:
        """Messages waiting in the node queues (what admission control reads)."""
        from app.tasks.runtime import get_runtime

        return get_runtime().dispatcher.queue_depth()

    def discard_runs(self, workflow_id: str) -> None:
        """Empty the queues and cancel the workflow's unfinished runs (a backlog the bench made
        only to time the front end), as POST /api/runs/<id>/cancel would, in two statements."""
        from app.tasks import celery

        celery.control.purge()
        with self.stack.engine.begin() as connection:
            connection.execute(
                sqlalchemy.text(
                    "UPDATE node_runs SET status = 'cancelled', finished_at = now()"
                    " WHERE status IN ('pending', 'retrying') AND run_id IN (SELECT run_id"
                    " FROM workflow_runs WHERE workflow_id = :id AND status IN ('queued',"
                    " 'running'))"
                ),
                {"id": workflow_id},
            )
            connection.execute(
                sqlalchemy.text(
                    "UPDATE workflow_runs SET status = 'cancelled', finished_at = now(),"
                    " error = 'discarded by the bench' WHERE workflow_id = :id"
                    " AND status IN ('queued', 'running')"
                ),
                {"id": workflow_id},
            )

    def run_times(self, run_ids: list[str]) -> dict[str, RunTimes]:
        if not run_ids:
            return {}
        with self.stack.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT run_id::text, status, extract(epoch FROM created_at),"
                    " extract(epoch FROM started_at), extract(epoch FROM finished_at)"
                    " FROM workflow_runs WHERE run_id = ANY(CAST(:ids AS uuid[]))"
                ),
                {"ids": run_ids},
            )
            return {
                row[0]: RunTimes(
                    status=row[1],
                    created=float(row[2]),
                    started=None if row[3] is None else float(row[3]),
                    finished=None if row[4] is None else float(row[4]),
                )
                for row in rows
            }

    def node_times(self, run_ids: list[str]) -> dict[str, list[tuple[str, float, float]]]:
        """Per run: (node_id, started, finished) of its finished nodes, in start order."""
        with self.stack.engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT run_id::text, node_id, extract(epoch FROM started_at),"
                    " extract(epoch FROM finished_at) FROM node_runs"
                    " WHERE run_id = ANY(CAST(:ids AS uuid[])) AND started_at IS NOT NULL"
                    " AND finished_at IS NOT NULL ORDER BY started_at"
                ),
                {"ids": run_ids},
            )
            nodes: dict[str, list[tuple[str, float, float]]] = {}
            for run_id, node_id, started, finished in rows:
                nodes.setdefault(run_id, []).append((node_id, float(started), float(finished)))
            return nodes

    def wait_for_runs(self, run_ids: list[str], timeout: float, interval: float = 0.2) -> bool:
        """Poll until every run is terminal; False when `timeout` passes first."""
        if not run_ids:
            return True
        deadline = time.monotonic() + timeout
        query = sqlalchemy.text(
            "SELECT count(*) FROM workflow_runs WHERE run_id = ANY(CAST(:ids AS uuid[]))"
            " AND status IN ('succeeded', 'failed', 'cancelled')"
        )
        while True:
            with self.stack.engine.connect() as connection:
                done = connection.execute(query, {"ids": run_ids}).scalar_one()
            if done >= len(run_ids):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
