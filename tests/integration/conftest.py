"""The real stack for integration tests: a migrated PostgreSQL, Redis, a Celery worker and beat.

The worker and beat are separate processes started once per session, exactly as ops run them
(`celery -A app.tasks worker`, `celery -A app.tasks beat`), with short timeouts so fault tests
finish quickly.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy
from sqlalchemy.orm import Session, sessionmaker

from app.models import make_engine, make_session_factory
from app.models.migrate import upgrade
from app.tasks.runtime import publish
from app.workflows import get_run, save_workflow, start_run

REPO = Path(__file__).resolve().parents[2]

#: Settings of the worker and beat under test: fast sweeps and short timeouts for fault tests.
STACK_ENV = {
    "DUALMCP_HTTP_ALLOWLIST": "127.0.0.1",
    "DUALMCP_VISIBILITY_TIMEOUT": "5",
    "DUALMCP_SWEEP_INTERVAL_S": "0.5",
    "DUALMCP_PENDING_REPUBLISH_S": "2",
    "DUALMCP_LEASE_GRACE_S": "1",
    "DUALMCP_MAX_REDELIVERIES": "3",
    # A node a killed worker leaves running is taken back after its lease: keep it short.
    "DUALMCP_NODE_TIMEOUT_S": "10",
    "DUALMCP_SCHEDULE_INTERVAL_S": "0.5",
    "DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S": "2",
    # Production roles refuse to start without one (app/startup_checks.py).
    "DUALMCP_ENCRYPTION_KEY": "Gr2Y8bbf1PAE9xjj3bSBJZ6oZ6Ajp6iD2_fKV5BUSr0=",
}


class Stack:
    """Handles on the running worker and beat, and on the database they share with the test."""

    def __init__(self, env: dict[str, str], sessions: sessionmaker[Session], logs: Path) -> None:
        self.env = env
        self.sessions = sessions
        self.logs = logs
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        #: Workers started with `start_queue_worker`, stopped with the stack.
        self.queue_workers: list[subprocess.Popen[bytes]] = []
        self._worker_count = 0

    def start_worker(self) -> None:
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        self.worker = self._celery(
            name, "worker", "--concurrency=2", f"--hostname=test{self._worker_count}@%h"
        )
        self._wait_ready(self.logs / f"{name}.log", b"ready.")

    def kill_worker(self) -> None:
        """SIGKILL the worker's whole process group: no warm shutdown, no acks."""
        assert self.worker is not None
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait(timeout=10)
        self.worker = None

    def start_queue_worker(
        self, queues: str, name: str, concurrency: int = 1
    ) -> subprocess.Popen[bytes]:
        """A worker serving only `queues` (`-Q a,b`), as a split layout runs it (DESIGN.md:
        Agents that act: one worker with `-Q` for each); ready when this returns."""
        worker = self._celery(
            name, "worker", "-Q", queues, f"--concurrency={concurrency}", f"--hostname={name}@%h"
        )
        self.queue_workers.append(worker)
        self._wait_ready(self.logs / f"{name}.log", b"ready.", worker)
        return worker

    def kill_queue_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL a queue worker's whole process group: no warm shutdown, no acks."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        self.queue_workers.remove(worker)

    def start_beat(self, schedule: Path, name: str = "beat") -> subprocess.Popen[bytes]:
        beat = self._celery(name, "beat", f"--schedule={schedule}")
        if name == "beat":
            self.beat = beat
        return beat

    def _celery(self, name: str, command: str, *args: str) -> subprocess.Popen[bytes]:
        """`celery -A app.tasks <command>` as ops run it, logging to <name>.log, in a process
        group of its own (a test can kill all of it)."""
        prefork = ("--pool=prefork",) if command == "worker" else ()
        with open(self.logs / f"{name}.log", "wb") as log:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "app.tasks",
                    command,
                    "--loglevel=INFO",
                    *args,
                    *prefork,
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        for process in (self.worker, self.beat, *self.queue_workers):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=5)

    def wait_for(self, check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
        """Poll `check` until it returns something truthy; fail with the worker log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.1)
        pytest.fail(f"timed out after {timeout}s waiting for {what}\n{self.tail_logs()}")

    def tail_logs(self) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-40:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def _wait_ready(
        self, log: Path, marker: bytes, process: subprocess.Popen[bytes] | None = None
    ) -> None:
        process = process or self.worker
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker in log.read_bytes():
                return
            if process is not None and process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"the Celery worker did not start\n{self.tail_logs()}")


@pytest.fixture(scope="session")
def stack(
    migrated_postgres: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    redis.Redis.from_url(redis_url).flushdb()
    env = {**os.environ, **STACK_ENV, "DATABASE_URL": migrated_postgres, "REDIS_URL": redis_url}
    tmp = tmp_path_factory.mktemp("stack")
    engine = make_engine(migrated_postgres)
    stack = Stack(env, make_session_factory(engine), tmp)
    try:
        stack.start_worker()
        stack.start_beat(tmp / "beat-schedule")
        yield stack
    finally:
        stack.stop()
        engine.dispose()


def launch(stack: Stack, definition: dict[str, Any], payload: Any) -> str:
    """Save (or re-version) the workflow, start a run in one transaction, publish after commit."""
    with stack.sessions.begin() as session:
        save_workflow(session, definition)
        started = start_run(session, definition["workflow_id"], payload)
    publish(started.to_publish)
    return started.run_id


def finished_run(stack: Stack, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run once it reached a terminal status, with its nodes keyed by id."""

    def check() -> dict[str, Any] | None:
        with stack.sessions() as session:
            run = get_run(session, run_id)
        return run if run["status"] in ("succeeded", "failed", "cancelled") else None

    run = stack.wait_for(check, timeout, what=f"run {run_id} to finish")
    run["by_node"] = {node["node_id"]: node for node in run["nodes"]}
    return run


ADMIN_KEY = "integration-admin-key"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn(stack: Stack, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """gunicorn serving `app.web:create_app()` with the production settings module
    (app/web/gunicorn_conf.py), against the stack's database and broker; yields its URL."""
    port = free_port()
    env = {**stack.env, "DUALMCP_API_KEYS": f"admin:{ADMIN_KEY}", **(extra_env or {})}
    with open(stack.logs / f"gunicorn-{port}.log", "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:app.web.gunicorn_conf",
                "app.web:create_app()",
                f"--bind=127.0.0.1:{port}",
                "--workers=2",
                "--threads=4",
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                return server.poll() is not None  # stop waiting if it died

        stack.wait_for(up, 30, what="gunicorn to answer")
        assert server.poll() is None, stack.tail_logs()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


@pytest.fixture(scope="session")
def web_url(stack: Stack) -> Iterator[str]:
    """gunicorn against the same database and broker as the session's worker."""
    with gunicorn(stack) as url:
        yield url


SERVICES_SCRIPT = REPO / ".ci" / "services.sh"


class PrivateServices:
    """A PostgreSQL and a Redis of this test session alone, on their own ports: fault tests
    restart them, which the shared ones (other sessions use them) must never see."""

    def __init__(self, state_dir: Path) -> None:
        self.env = {
            **os.environ,
            "DUALMCP_TEST_PG_PORT": str(free_port()),
            "DUALMCP_TEST_REDIS_PORT": str(free_port()),
            "DUALMCP_SERVICES_DIR": str(state_dir),
        }
        urls = dict(
            line.removeprefix("export ").split("=", 1)
            for line in self._run("env").splitlines()
            if line.startswith("export ")
        )
        self.database_url, self.redis_url = urls["DATABASE_URL"], urls["REDIS_URL"]

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [str(SERVICES_SCRIPT), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"services.sh {' '.join(args)}: {result.stderr}"
        return result.stdout

    def start(self) -> None:
        self._run("start")

    def restart(self, service: str) -> None:
        """Stop and start `postgres` or `redis` (PostgreSQL's fast stop drops every client)."""
        self._run("restart", service)

    def clean(self) -> None:
        self._run("clean")


@pytest.fixture(scope="session")
def private_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateServices]:
    services = PrivateServices(tmp_path_factory.mktemp("private-services"))
    try:
        services.start()
        upgrade(services.database_url)
        yield services
    finally:
        services.clean()


@pytest.fixture(scope="session")
def private_stack(
    private_services: PrivateServices, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A worker and beat on the private services. Nodes time out after 5 s, so a lease a
    fault leaves behind expires within the test. Logs are JSON and the worker serves its
    metrics, as in compose."""
    tmp = tmp_path_factory.mktemp("private-stack")
    env = {
        **os.environ,
        **STACK_ENV,
        "DUALMCP_NODE_TIMEOUT_S": "5",  # a restart's stale lease expires within the test
        "DATABASE_URL": private_services.database_url,
        "REDIS_URL": private_services.redis_url,
        "DUALMCP_LOG_FORMAT": "json",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "worker-metrics"),
        "DUALMCP_WORKER_METRICS_PORT": str(free_port()),
        "DUALMCP_WORKER_METRICS_ADDR": "127.0.0.1",
    }
    engine = make_engine(private_services.database_url)
    stack = Stack(env, make_session_factory(engine), tmp)
    try:
        stack.start_worker()
        stack.start_beat(tmp / "beat-schedule")
        yield stack
    finally:
        stack.stop()
        engine.dispose()


@pytest.fixture(scope="session")
def private_web_url(private_stack: Stack) -> Iterator[str]:
    """gunicorn on the private services, its two processes' metrics added up as in the image."""
    metrics_dir = private_stack.logs / "web-metrics"
    with gunicorn(private_stack, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}) as url:
        yield url


def execute(web_url: str, workflow_id: str, payload: Any = None) -> Any:
    """POST /api/workflow/execute as an admin; the httpx response."""
    return httpx.post(
        f"{web_url}/api/workflow/execute",
        json={"workflow_id": workflow_id, "input": payload or {}},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=10,
    )


@contextmanager
def own_database(postgres_url: str, prefix: str) -> Iterator[str]:
    """A migrated database of the caller alone on the session's PostgreSQL, dropped after: no
    other stack's sweeper sees its node_runs (a test of another recovery path needs that)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.make_url(postgres_url).set(database=name).render_as_string(False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def empty_redis_database(redis_url: str) -> Iterator[str]:
    """The URL of an empty database (8-15) of the session's Redis, flushed after: a broker no
    other worker listens on."""

    def dbsize(url: str) -> int:
        client = redis.Redis.from_url(url)
        try:
            return int(client.dbsize())
        finally:
            client.close()

    base = redis_url.rsplit("/", 1)[0]
    candidates = [f"{base}/{n}" for n in random.sample(range(8, 16), 8)]
    url = next((candidate for candidate in candidates if not dbsize(candidate)), "")
    assert url, "no empty Redis database among 8-15"
    try:
        yield url
    finally:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
