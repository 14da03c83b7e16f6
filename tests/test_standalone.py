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

from app.standalone import build, standalone_config
from app.tasks.celery_app import make_celery
from tests.mcp_clients import call_tool, tool_names

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


SAMPLE_NODES = [
    ("fetch", "data_fetch"),
    ("analyze", "mcp_llm"),
    ("write_email", "ai_content_generation"),
    ("email", "email_send"),
    ("check", "conditional"),
    ("sms", "twilio_sms"),
    ("notify", "webhook"),
]


def test_demo_prints_the_url_the_key_and_a_succeeded_run(standalone: Standalone) -> None:
    printed = standalone.wait_for_output("Serving; Ctrl-C stops.")
    assert standalone.url in printed
    assert f"pages: {standalone.url}/ui" in printed
    assert f"admin API key: {ADMIN_KEY}" in printed
    assert "demo: offline (LLM nodes: echo provider; email and SMS: the outbox)" in printed
    assert "fired a signed new-lead webhook at sales-lead (lead 42)" in printed
    assert "demo failed" not in printed


def test_demo_runs_the_sales_lead_sample_and_prints_every_node(standalone: Standalone) -> None:
    printed = standalone.wait_for_output("Serving; Ctrl-C stops.")
    run_line = next(line for line in printed.splitlines() if line.startswith("run "))
    assert run_line.endswith(": succeeded"), printed
    rows = {
        line.split()[0]: line
        for line in printed.splitlines()
        if line.startswith("  ") and tuple(line.split()[:2]) in SAMPLE_NODES
    }
    assert list(rows) == [node_id for node_id, _ in SAMPLE_NODES]  # in definition order
    for node_id, node_type in SAMPLE_NODES:
        assert rows[node_id].split()[1:3] == [node_type, "succeeded"], rows[node_id]
    assert "HTTP 200" in rows["fetch"]  # the demo CRM, asked with the crm-token credential
    assert "echo: [echo provider, no LLM called]" in rows["analyze"]
    assert "echo: [echo provider, no LLM called]" in rows["write_email"]
    assert "outbox to katherine.johnson@example.com id <" in rows["email"]  # the Message-ID
    assert "then (True)" in rows["check"]  # lead 42 scores 91
    assert "outbox to +1415555" in rows["sms"]
    assert "http HTTP 200 id " in rows["notify"]  # delivered to the demo's sales-team endpoint


def test_demo_prints_the_outbox_and_serves_it(standalone: Standalone) -> None:
    printed = standalone.wait_for_output("Serving; Ctrl-C stops.")
    assert "messages; nothing left this machine):" in printed
    assert "  email  to " in printed
    assert "Welcome to Example Corp" in printed
    assert "  sms    to +1415555" in printed
    with httpx.Client(base_url=standalone.url, timeout=10, headers=ADMIN) as client:
        outbox = client.get("/api/outbox").json()["messages"]
        credentials = client.get("/api/workflows/sales-lead/credentials").json()
    assert {m["channel"] for m in outbox} == {"email", "sms"}
    assert [c["name"] for c in credentials["credentials"]] == ["crm-token", "sales-webhook"]


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


def test_an_agent_answers_and_remembers_without_redis(standalone: Standalone) -> None:
    printed = standalone.wait_for_output("Serving; Ctrl-C stops.")
    assert "  analyze      mcp_llm                succeeded" in printed
    assert "agent sales-assistant (session demo, 2 messages stored):" in printed
    with httpx.Client(base_url=standalone.url, timeout=30, headers=ADMIN) as client:
        message = {"agent_id": "sales-assistant", "session_id": "demo", "message": "And now?"}
        reply = client.post("/api/mcp/process", json=message)
        memory = client.get("/api/agents/sales-assistant/memory", params={"session_id": "demo"})

    assert reply.status_code == 200, reply.text
    assert reply.json()["memory_size"] == 4
    assert [m["content"] for m in memory.json()["messages"]][::2] == ["Who are you?", "And now?"]


def test_the_demo_agent_calls_the_sales_lead_workflow_as_a_tool(standalone: Standalone) -> None:
    printed = standalone.wait_for_output("Serving; Ctrl-C stops.")
    assert "agent sales-assistant called the workflow as a tool:" in printed
    assert 'process_lead({"lead_id": "7", "source": "agent"}): ok in' in printed
    assert "claude mcp add --transport http dualmcp " + standalone.url + "/mcp" in printed
    with httpx.Client(base_url=standalone.url, timeout=30, headers=ADMIN) as client:
        runs = client.get("/api/runs", params={"workflow_id": "sales-lead"}).json()["runs"]
        memory = client.get(
            "/api/agents/sales-assistant/memory", params={"session_id": "demo-tools"}
        ).json()

    by_agent = [run for run in runs if run["source"] == "agent"]
    assert len(by_agent) == 1 and by_agent[0]["status"] == "succeeded"
    assert by_agent[0]["input"] == {"lead_id": "7", "source": "agent"}
    assert [m["role"] for m in memory["messages"]] == ["user", "assistant", "tool", "assistant"]
    assert by_agent[0]["run_id"] in memory["messages"][2]["content"]


def test_the_standalone_server_speaks_mcp(standalone: Standalone) -> None:
    standalone.wait_for_output("Serving; Ctrl-C stops.")

    url = standalone.url + "/mcp"
    names = tool_names(url, ADMIN_KEY)
    result = call_tool(url, ADMIN_KEY, "process_lead", {"lead_id": "42"})

    assert {"get_run", "ask_sales-assistant", "process_lead"} <= set(names)
    assert result.structured_content is not None
    assert result.structured_content["status"] == "succeeded"
    assert set(result.structured_content["output"]) == {"notify"}  # where the run's path ended


# Set up in this process: standalone mode reads the environment and never writes it.

#: What standalone mode used to set for itself; a test starts without them.
STANDALONE_VARIABLES = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "DUALMCP_CACHE_URL",
    "DUALMCP_HTTP_ALLOWLIST",
    "DUALMCP_ENCRYPTION_KEY",
    "DUALMCP_API_KEYS",
)


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in STANDALONE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-the-demo")


def test_setting_up_standalone_mode_leaves_the_environment_as_it_was(
    bare_environment: None, tmp_path: Path
) -> None:
    before = dict(os.environ)

    config = standalone_config("127.0.0.1", 8123, demo=True, workdir=tmp_path)
    built = build(config, demo=True)
    try:
        assert dict(os.environ) == before
        settings = built.web.extensions["dualmcp"].settings
        assert settings is config.settings is built.runtime.settings
        assert settings.database_url == f"sqlite:///{tmp_path / 'dualmcp.db'}"
        assert (settings.celery_broker_url, settings.cache_url) == (
            "memory://localhost//",
            "memory://",
        )
        assert settings.http_allowlist == "127.0.0.1" and settings.openai_api_key is None
        assert f"admin:{config.admin_key}" in settings.api_keys
        assert settings.encryption_key is not None
        assert settings.encryption_key.get_secret_value() in (tmp_path / "dualmcp.key").read_text()
    finally:
        built.runtime.http.close()
        built.celery.close()


def test_standalone_mode_uses_its_in_memory_broker_whatever_the_environment_names(
    bare_environment: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Celery itself prefers these two variables to its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:9/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://127.0.0.1:9/1")

    config = standalone_config("127.0.0.1", 8123, demo=False, workdir=tmp_path)
    celery = make_celery(config.settings)
    try:
        with celery.connection_for_write() as connection:
            transport = connection.transport_cls
        backend = type(celery.backend).__name__
    finally:
        celery.close()

    assert (transport, backend) == ("memory", "CacheBackend")


def test_a_taken_port_is_one_line_before_any_file_is_made(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "standalone", "--demo", f"--port={port}"],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is in use" in line and "make run PORT=" in line
    assert list(tmp_path.iterdir()) == []  # no dualmcp.db, no dualmcp.key


def test_make_run_serves_on_the_port_it_is_given() -> None:
    planned = subprocess.run(
        ["make", "-n", "run", "PORT=9123"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert planned.returncode == 0, planned.stderr
    assert "dualmcp standalone --demo --host 127.0.0.1 --port 9123" in planned.stdout
