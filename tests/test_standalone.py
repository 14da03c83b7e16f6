"""`dualmcp standalone --demo` as a user runs it: one process, no services, over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ADMIN_KEY = "standalone-admin-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


class Standalone:
    def __init__(self, url: str, output: Path) -> None:
        self.url, self.output = url, output

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_for_output(self, marker: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.text():
                return self.text()
            time.sleep(0.1)
        pytest.fail(f"standalone never printed {marker!r}; it printed:\n{self.text()}")


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    workdir = tmp_path_factory.mktemp("standalone")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")  # no services
    }
    env.update(DUALMCP_API_KEYS=f"admin:{ADMIN_KEY}", PYTHONUNBUFFERED="1")
    output = workdir / "output.txt"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "standalone", "--demo", f"--port={port}"],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Standalone(f"http://127.0.0.1:{port}", output)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def test_demo_prints_the_url_the_key_and_a_succeeded_run(standalone: Standalone) -> None:
    printed = standalone.wait_for_output("Serving; Ctrl-C stops.")
    assert standalone.url in printed
    assert f"admin API key: {ADMIN_KEY}" in printed
    assert "succeeded" in printed
    for node_id in ("fetch", "check", "hot", "cold", "summary"):
        assert f"  {node_id} " in printed
    assert "skipped" in printed  # lead 42 is hot: the cold branch is skipped


def test_a_workflow_runs_through_the_standalone_server_over_http(standalone: Standalone) -> None:
    standalone.wait_for_output("Serving; Ctrl-C stops.")
    definition = {
        "workflow_id": "standalone-sum",
        "nodes": [
            {
                "id": "add",
                "type": "transform",
                "params": {"values": {"sum": "{{ trigger.a + trigger.b }}"}},
                "next": "check",
            },
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "nodes.add.sum > 10"},
                "then": "big",
                "else": "small",
            },
            {"id": "big", "type": "transform", "params": {"values": {"size": "big"}}},
            {"id": "small", "type": "transform", "params": {"values": {"size": "small"}}},
        ],
    }
    with httpx.Client(base_url=standalone.url, timeout=10) as client:
        assert client.post("/api/workflows", json=definition, headers=ADMIN).status_code == 201
        started = client.post(
            "/api/workflow/execute",
            json={"workflow_id": "standalone-sum", "input": {"a": 7, "b": 5}},
            headers=ADMIN,
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = client.get(
                "/api/workflow/status", params={"run_id": run_id}, headers=ADMIN
            ).json()
            if run["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.1)

    assert run["status"] == "succeeded", run
    outputs = {node["node_id"]: (node["status"], node["output"]) for node in run["nodes"]}
    assert outputs["add"] == ("succeeded", {"sum": 12})
    assert outputs["big"] == ("succeeded", {"size": "big"})
    assert outputs["small"][0] == "skipped"
