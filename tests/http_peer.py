"""A real HTTP server on 127.0.0.1 for driver and integration tests: records, then replies.

Prefer it to mocking httpx: the drivers then go through the real SSRF-guarded client and sockets.

    with HttpPeer() as peer:
        peer.reply("/hook", status=503, fail_times=2)   # 503 twice, then 200
        ...
        assert peer.requests[0].headers["webhook-id"] == key
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Reply:
    """What the peer answers on one path."""

    status: int = 200
    json: Any = None
    #: Builds the JSON answer from the request (a server that speaks a protocol, not a canned one).
    json_from: Callable[[RecordedRequest], Any] | None = None
    body: bytes | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering (interrupted when the peer closes).
    delay_s: float = 0.0
    #: Answer `fail_status` to the first N requests, then the reply above.
    fail_times: int = 0
    fail_status: int = 503
    served: int = 0


@dataclass
class RecordedRequest:
    method: str
    #: The path with its query string, as sent.
    path: str
    #: Header names lower-cased.
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def route(self) -> str:
        return urlsplit(self.path).path


class HttpPeer:
    """A threaded HTTP server on loopback; unknown paths answer 200 {"ok": true}."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.replies: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = False  # server_close() joins the handlers
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reply(self, path: str, **kwargs: Any) -> Reply:
        """Set the reply for `path` (without query string); returns it for later inspection."""
        reply = Reply(**kwargs)
        self.replies[path] = reply
        return reply

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.route == path]

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        with self._lock:  # wake handlers idling on a keep-alive connection
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> HttpPeer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _answer(self, request: RecordedRequest) -> tuple[Reply, int]:
        with self._lock:
            self.requests.append(request)
            reply = self.replies.get(request.route) or Reply(json={"ok": True})
            reply.served += 1
            failing = reply.served <= reply.fail_times
        return reply, (reply.fail_status if failing else reply.status)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30  # an idle keep-alive connection never outlives a test by much

            def setup(self) -> None:
                super().setup()
                with peer._lock:
                    peer._connections.add(self.connection)

            def finish(self) -> None:
                with peer._lock:
                    peer._connections.discard(self.connection)
                super().finish()

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                recorded = RecordedRequest(self.command, self.path, headers, body)
                reply, status = peer._answer(recorded)
                if reply.delay_s and peer._stopping.wait(reply.delay_s):
                    return
                if reply.json_from is not None and status == reply.status:
                    reply = Reply(
                        status=status, json=reply.json_from(recorded), headers=reply.headers
                    )
                payload, content_type = _encode(reply)
                self.send_response(status)
                if "content-type" not in {name.lower() for name in reply.headers}:
                    self.send_header("Content-Type", content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a timeout test)

        return Handler


def _encode(reply: Reply) -> tuple[bytes, str]:
    if reply.body is not None:
        body = reply.body.encode() if isinstance(reply.body, str) else reply.body
        return body, "text/plain; charset=utf-8"
    if reply.json is not None:
        return jsonlib.dumps(reply.json).encode(), "application/json"
    return b"", "text/plain"
