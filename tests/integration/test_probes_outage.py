"""The probes keep the resilience promises (issue 16): with Redis down, a trigger through gunicorn
is still accepted (202), the web stays ready, and the worker's and beat's liveness commands keep
passing for several freshness windows (the old broker ping failed at once), so nothing is
restarted; once Redis is back the accepted run finishes. With PostgreSQL unreachable the web is
not ready (503).

On private services (tests/integration/conftest.py): the shared Redis never goes away. The
worker and beat here are this module's own, each with a heartbeat directory of its own.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.workflows import save_workflow
from tests.integration.conftest import (
    PrivateServices,
    Stack,
    execute,
    finished_run,
    free_port,
    gunicorn,
)

#: Short enough that an outage of a few windows fits in a test.
MAX_AGE_S = 2.0
DEFINITION = {
    "workflow_id": "probes-outage",
    "nodes": [{"id": "shape", "type": "transform", "params": {"values": {"n": "{{ trigger.n }}"}}}],
}


@pytest.fixture(scope="module")
def probe_stack(
    private_services: PrivateServices,
    private_stack: Stack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """A worker and beat of this module, on the private services, with a short window."""
    tmp = tmp_path_factory.mktemp("probes")
    env = {
        **private_stack.env,
        "DUALMCP_HEARTBEAT_DIR": str(tmp / "heartbeats"),
        "DUALMCP_HEARTBEAT_MAX_AGE_S": str(MAX_AGE_S),
        "DUALMCP_WORKER_METRICS_PORT": "0",
    }
    stack = Stack(env, private_stack.sessions, tmp)
    try:
        stack.start_queue_worker("dualmcp.nodes,dualmcp.runs", "probes-worker")
        stack.beat = stack.start_beat(tmp / "beat-schedule", name="probes-beat")
        yield stack
    finally:
        stack.stop()


def healthcheck(stack: Stack, role: str) -> subprocess.CompletedProcess[str]:
    """`dualmcp healthcheck --role <role>` as the probe runs it, with the stack's environment."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "healthcheck", "--role", role],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def stop_redis(services: PrivateServices) -> None:
    client = redis.Redis.from_url(services.redis_url)
    client.shutdown(nosave=True)  # answers by closing the connection
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(services.redis_url, socket_connect_timeout=1).ping()


def test_a_redis_outage_keeps_triggers_accepted_and_every_probe_passing(
    private_services: PrivateServices,
    probe_stack: Stack,
) -> None:
    with probe_stack.sessions.begin() as session:
        save_workflow(session, DEFINITION)
    for role in ("worker", "beat"):
        probe_stack.wait_for(
            lambda role=role: healthcheck(probe_stack, role).returncode == 0,
            30,
            what=f"the {role}'s heartbeat",
        )

    with gunicorn(probe_stack) as web_url:
        stop_redis(private_services)
        try:
            accepted = execute(web_url, "probes-outage", {"n": 7})
            assert accepted.status_code == 202, accepted.text

            # Several windows: a loop that stopped touching its file would fail by now.
            outage_started = time.monotonic()
            while time.monotonic() - outage_started < 4 * MAX_AGE_S:
                ready = httpx.get(f"{web_url}/readyz", timeout=10)
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["broker"].startswith("unreachable")
                for role in ("worker", "beat"):
                    result = healthcheck(probe_stack, role)
                    assert result.returncode == 0, (role, result.stdout, probe_stack.tail_logs())
                time.sleep(0.5)
        finally:
            private_services.start()  # Redis back (PostgreSQL was never gone)

    run = finished_run(probe_stack, accepted.json()["run_id"], timeout=60)
    assert run["status"] == "succeeded", (run, probe_stack.tail_logs())
    assert run["by_node"]["shape"]["output"] == {"n": 7}
    for process in (*probe_stack.queue_workers, probe_stack.beat):
        assert process is not None and process.poll() is None  # nothing was restarted


def test_a_stopped_worker_loop_fails_its_liveness_within_the_window(probe_stack: Stack) -> None:
    """SIGSTOP: the process is there, its loop is not; the probe must say so."""
    (worker,) = probe_stack.queue_workers
    probe_stack.wait_for(
        lambda: healthcheck(probe_stack, "worker").returncode == 0, 30, what="a fresh heartbeat"
    )
    worker.send_signal(signal.SIGSTOP)
    try:
        time.sleep(MAX_AGE_S + 1)
        result = healthcheck(probe_stack, "worker")
    finally:
        worker.send_signal(signal.SIGCONT)
    assert result.returncode == 1
    assert "its loop stopped" in result.stdout


def test_the_web_is_not_ready_while_postgres_does_not_answer(probe_stack: Stack) -> None:
    nowhere = f"postgresql+psycopg://dualmcp:dualmcp@127.0.0.1:{free_port()}/dualmcp"
    with gunicorn(probe_stack, {"DATABASE_URL": nowhere}) as web_url:
        answer = httpx.get(f"{web_url}/readyz", timeout=30)
        live = httpx.get(f"{web_url}/healthz", timeout=10)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
    assert answer.json()["checks"]["database"].startswith("unreachable")
    assert live.status_code == 200  # not ready, but no reason to restart it


def test_heartbeats_live_in_the_configured_directory(probe_stack: Stack) -> None:
    directory = Path(probe_stack.env["DUALMCP_HEARTBEAT_DIR"])
    assert {p.name for p in directory.iterdir()} == {
        "dualmcp-worker.heartbeat",
        "dualmcp-beat.heartbeat",
    }
