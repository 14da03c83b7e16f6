"""OpenTelemetry end to end: gunicorn and a worker export to a local OTLP receiver, and one trace
(and one request id) follows a trigger to its last node (issue 16)."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from app.models import make_engine, make_session_factory
from app.workflows import save_workflow
from tests.http_peer import HttpPeer
from tests.integration.conftest import (
    ADMIN_KEY,
    STACK_ENV,
    Stack,
    empty_redis_database,
    finished_run,
    gunicorn,
    own_database,
)


class OtlpReceiver:
    """POST /v1/traces on 127.0.0.1 (OTLP http/protobuf), keeping each span's service, name and
    trace id."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = next(
                        attribute.value.string_value
                        for attribute in resource_spans.resource.attributes
                        if attribute.key == "service.name"
                    )
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            receiver.spans.append((service, span.name, span.trace_id.hex()))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if self.path == "/v1/traces" else 404)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def traced(
    postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Stack, str, OtlpReceiver]]:
    """A worker and gunicorn of their own (database and broker too), tracing to a receiver."""
    receiver = OtlpReceiver()
    with (
        own_database(postgres_url, "tracing") as database,
        empty_redis_database(redis_url) as broker,
    ):
        env = {
            **os.environ,
            **STACK_ENV,
            "DATABASE_URL": database,
            "REDIS_URL": broker,
            "DUALMCP_LOG_FORMAT": "json",
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        engine = make_engine(database)
        stack = Stack(env, make_session_factory(engine), tmp_path_factory.mktemp("tracing"))
        try:
            stack.start_worker()
            with gunicorn(stack) as url:
                yield stack, url, receiver
        finally:
            stack.stop()
            engine.dispose()
            receiver.close()


def _fire_two_nodes(stack: Stack, url: str, http_peer: HttpPeer, request_id: str) -> str:
    workflow_id = f"traced-{uuid.uuid4().hex[:8]}"
    http_peer.reply("/traced", json={"ok": True})
    definition = {
        "workflow_id": workflow_id,
        "nodes": [
            {
                "id": "first",
                "type": "data_fetch",
                "params": {"url": f"{http_peer.url}/traced"},
                "next": "second",
            },
            {"id": "second", "type": "data_fetch", "params": {"url": f"{http_peer.url}/traced"}},
        ],
    }
    with stack.sessions.begin() as session:
        save_workflow(session, definition)
    response = httpx.post(
        f"{url}/api/workflow/execute",
        json={"workflow_id": workflow_id, "input": {}},
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Request-ID": request_id},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-ID"] == request_id
    run = finished_run(stack, response.json()["run_id"])
    assert run["status"] == "succeeded", run
    return str(run["run_id"])


def test_one_trace_spans_the_trigger_and_both_node_tasks(
    traced: tuple[Stack, str, OtlpReceiver], http_peer: HttpPeer
) -> None:
    stack, url, receiver = traced
    _fire_two_nodes(stack, url, http_peer, f"trace-{uuid.uuid4().hex[:8]}")

    def one_trace() -> str | None:
        web = [t for s, n, t in receiver.spans if s == "dualmcp-web" and n.startswith("POST ")]
        for trace_id in web:
            nodes = [
                n
                for s, n, t in receiver.spans
                if t == trace_id and s == "dualmcp-worker" and n == "run/dualmcp.run_node"
            ]
            if len(nodes) == 2:
                return trace_id
        return None

    trace_id = stack.wait_for(
        one_trace, 20, what=f"one trace from the web to both nodes in {receiver.spans}"
    )
    names = {(s, n) for s, n, t in receiver.spans if t == trace_id}
    assert ("dualmcp-web", "apply_async/dualmcp.run_node") in names  # the web's publish
    assert any(s == "dualmcp-worker" and n == "GET" for s, n in names), names  # httpx
    assert any(s == "dualmcp-web" and n.startswith(("INSERT", "SELECT")) for s, n in names), names


def test_the_request_id_is_in_both_nodes_worker_log_lines(
    traced: tuple[Stack, str, OtlpReceiver], http_peer: HttpPeer
) -> None:
    stack, url, _receiver = traced
    request_id = f"req-{uuid.uuid4().hex[:8]}"
    run_id = _fire_two_nodes(stack, url, http_peer, request_id)
    lines = []
    for path in stack.logs.glob("worker-*.log"):
        for text in path.read_text(errors="replace").splitlines():
            if text.startswith("{") and run_id in text:
                lines.append(json.loads(text))
    nodes = {line.get("node_id") for line in lines if line.get("request_id") == request_id}
    assert {"first", "second"} <= nodes, lines
    assert all(line.get("request_id") == request_id for line in lines if line.get("node_id"))
