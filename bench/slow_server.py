"""The slow outside world of the benchmark: an OpenAI-compatible server that answers late.

    python -m bench.slow_server --port 58002 --delay 1.0 [--jitter 0.5] [--host 127.0.0.1 ...]

What an LLM or a slow API looks like to a node (issue 17, section 1): it waits, and costs the
caller no CPU meanwhile. Its own process (asyncio, HTTP/1.1 keep-alive, backlog 1024), so
hundreds of requests wait at once without blocking each other or anyone's GIL.

- `POST /v1/chat/completions`: a Chat Completions answer (what the openai SDK parses) after
  `delay` seconds.
- any other POST: `{"ok": true}` after `delay` seconds (HTTP nodes counting side effects).
- `GET /stats`: `{"requests", "connections", "in_flight", "max_in_flight", "keys", "peers"}`
  at once, where
  `keys` counts each `Idempotency-Key` header seen and `peers` the requests per client address;
  `POST /stats/reset` zeroes them.

`--jitter J` spreads each delay uniformly over delay x (1 +- J), as real LLM and API latencies
vary (a seeded generator: the same sequence every run); 0, the default, answers every request
after exactly `delay`, so a batch started together comes back together.

It reads a request's body by its Content-Length (chunked bodies are not spoken: 411).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

#: A request head larger than this is not one of ours: the connection is dropped.
MAX_HEAD = 64 * 1024
COMPLETIONS_PATH = "/v1/chat/completions"


@dataclass
class Stats:
    requests: int = 0
    #: TCP connections accepted: many more than the most in flight means the client's pool
    #: keeps too few alive between requests and reconnects.
    connections: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    keys: Counter[str] = field(default_factory=Counter)
    peers: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "connections": self.connections,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "keys": dict(self.keys),
            "peers": dict(self.peers),
        }


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def completion(request_body: bytes) -> dict[str, Any]:
    """A minimal, valid Chat Completions answer naming the model asked for."""
    try:
        model = str(json.loads(request_body).get("model") or "slow")
    except (ValueError, AttributeError):
        model = "slow"
    return {
        "id": f"chatcmpl-slow-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "a slow answer"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def response(status: str, payload: Any) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The next request on the connection; None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = [*lines[0].split(" ", 2), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method, path.split("?", 1)[0], headers, body)


class SlowServer:
    def __init__(self, delay: float, jitter: float = 0.0) -> None:
        self.delay = delay
        self.jitter = jitter
        self.stats = Stats()
        self._random = random.Random(17)

    def next_delay(self) -> float:
        if not self.jitter:
            return self.delay
        return self.delay * (1 + self.jitter * self._random.uniform(-1, 1))

    async def answer(self, request: Request, peer: str) -> bytes:
        if request.method == "GET" and request.path == "/stats":
            return response("200 OK", self.stats.as_json())
        if request.method == "POST" and request.path == "/stats/reset":
            self.stats = Stats()
            return response("200 OK", {"ok": True})
        if request.method != "POST":
            return response("404 Not Found", {"error": "not found"})
        if "chunked" in request.headers.get("transfer-encoding", ""):
            return response("411 Length Required", {"error": "send a Content-Length"})
        stats = self.stats
        stats.requests += 1
        stats.peers[peer] += 1
        key = request.headers.get("idempotency-key")
        if key:
            stats.keys[key] += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        try:
            await asyncio.sleep(self.next_delay())
        finally:
            stats.in_flight -= 1
        if request.path == COMPLETIONS_PATH:
            return response("200 OK", completion(request.body))
        return response("200 OK", {"ok": True})

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Requests on one keep-alive connection, answered in order."""
        peer = str((writer.get_extra_info("peername") or ("?",))[0])
        self.stats.connections += 1
        try:
            while (request := await read_request(reader)) is not None:
                writer.write(await self.answer(request, peer))
                await writer.drain()
                if request.headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def serve(hosts: list[str], port: int, delay: float, jitter: float) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    slow = SlowServer(delay, jitter)
    server = await asyncio.start_server(
        slow.serve_connection, hosts, port, backlog=1024, reuse_address=True, limit=MAX_HEAD
    )
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", action="append", help="repeatable; default 127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds before each answer")
    parser.add_argument("--jitter", type=float, default=0.0, help="delays spread over +- this")
    args = parser.parse_args()
    asyncio.run(serve(args.host or ["127.0.0.1"], args.port, args.delay, args.jitter))


if __name__ == "__main__":
    main()
