"""The I/O pool: a `celery worker -P threads` runs nodes that wait by the dozen at once, and
still enforces each node's timeout (issue 17: the watchdog of app/workflows/deadlines.py, as
SIGALRM does in a prefork child), against a local OpenAI-compatible server."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.http_peer import HttpPeer
from tests.integration.conftest import REPO, Stack, finished_run, launch
from tests.llm_peers import OPENAI_PATH, serve_openai

#: The SDK retries a 500 this many times, each after the 100 ms the server asks for: about
#: 5 s per attempt, far past the node's timeout.
SDK_RETRIES = 50
NODE_TIMEOUT_S = 2
#: How long the stalling server takes to answer: far past the node's timeout.
STALL_S = 8


@pytest.fixture
def llm() -> Iterator[HttpPeer]:
    """An OpenAI-compatible server of this test's own (OPENAI_BASE_URL of the worker)."""
    with HttpPeer() as peer:
        yield peer


@pytest.fixture
def threads_worker(stack: Stack, llm: HttpPeer) -> Iterator[subprocess.Popen[bytes]]:
    """The only worker while the test runs: the suite's prefork one stops (warm shutdown)
    and comes back after, so every node here runs in a thread of this one."""
    assert stack.worker is not None
    stack.worker.terminate()
    stack.worker.wait(timeout=30)
    stack.worker = None
    env = {
        **stack.env,
        "OPENAI_BASE_URL": f"{llm.url}/v1",
        "DUALMCP_LLM_MAX_RETRIES": str(SDK_RETRIES),
        "DUALMCP_DB_POOL_SIZE": "4",
    }
    log_path = stack.logs / "io-worker.log"
    command = [sys.executable, "-m", "celery", "-A", "app.tasks", "worker", "--loglevel=INFO"]
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [*command, "-P", "threads", "-c", "40", "--hostname=io@%h"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        stack.wait_for(
            lambda: b"ready." in log_path.read_bytes() or worker.poll() is not None,
            60,
            what="the threads worker",
        )
        assert worker.poll() is None, stack.tail_logs()
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        stack.start_worker()


def one_openai_node(workflow_id: str, **node: object) -> dict[str, object]:
    ask = {"id": "ask", "type": "openai", "params": {"prompt": "hi", "model": "m"}, **node}
    return {"workflow_id": workflow_id, "nodes": [ask]}


def run_to_its_end(
    stack: Stack, definition: dict[str, object]
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """The run of `definition`, finished; its `ask` node; the seconds from launch to its end."""
    started = time.monotonic()
    run = finished_run(stack, launch(stack, definition, {}), timeout=30)
    return run, run["by_node"]["ask"], time.monotonic() - started


def test_an_sdk_retrying_past_the_node_timeout_is_stopped_at_it_and_retried_by_policy(
    stack: Stack, llm: HttpPeer, threads_worker: subprocess.Popen[bytes]
) -> None:
    llm.reply(
        OPENAI_PATH,
        status=500,
        json={"error": {"message": "overloaded"}},
        headers={"retry-after-ms": "100"},
    )
    definition = one_openai_node(
        "io-timeout", timeout_s=NODE_TIMEOUT_S, retry={"max_attempts": 2, "backoff_s": 0}
    )
    run, node, took = run_to_its_end(stack, definition)

    assert (run["status"], node["status"], node["attempt"]) == ("failed", "failed", 2), run
    assert node["error"] == f"timed out after {NODE_TIMEOUT_S}s"
    # Two attempts of ~2 s each (plus the sweep that picks the retry up), where the SDK alone
    # would have taken ~5 s each; and the SDK stopped retrying when its node timed out.
    assert took < 2 * NODE_TIMEOUT_S + 4, took
    sent = len(llm.requests_to(OPENAI_PATH))
    assert 2 <= sent < 2 * (NODE_TIMEOUT_S / 0.1 + 5), sent
    time.sleep(1)  # nothing more reaches the server once the node has failed
    assert len(llm.requests_to(OPENAI_PATH)) == sent


def test_slow_llm_nodes_wait_side_by_side_in_one_threads_worker(
    stack: Stack, llm: HttpPeer, threads_worker: subprocess.Popen[bytes]
) -> None:
    serve_openai(llm, delay_s=1.0)
    definition = one_openai_node("io-parallel", timeout_s=20)
    started = time.monotonic()
    run_ids = [launch(stack, definition, {"n": n}) for n in range(30)]
    runs = [finished_run(stack, run_id, timeout=30) for run_id in run_ids]
    took = time.monotonic() - started

    assert {run["status"] for run in runs} == {"succeeded"}, runs[0]
    nodes = [run["by_node"]["ask"] for run in runs]
    # All 30 in flight at once: the last one started before the first one finished.
    assert max(node["started_at"] for node in nodes) < min(node["finished_at"] for node in nodes)
    assert took < 12, took  # one process, 30 one-second calls (prefork -c 2: 15 s at least)


def test_an_llm_that_stalls_is_cut_off_at_the_node_timeout_not_the_sdks(
    stack: Stack, llm: HttpPeer, threads_worker: subprocess.Popen[bytes]
) -> None:
    # The SDK's own timeout is DUALMCP_LLM_TIMEOUT_S (60 s); the server answers after 8 s. A
    # blocking read cannot be interrupted in a thread: the per-request timeout must end it.
    serve_openai(llm, delay_s=STALL_S)
    definition = one_openai_node(
        "io-stall", timeout_s=NODE_TIMEOUT_S, retry={"max_attempts": 1, "backoff_s": 0}
    )
    run, node, took = run_to_its_end(stack, definition)

    assert (run["status"], node["status"]) == ("failed", "failed"), run
    assert node["error"] == f"timed out after {NODE_TIMEOUT_S}s"
    assert took < STALL_S - 2, took
