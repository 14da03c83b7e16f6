"""The load generator: a process of its own, so its CPU and GIL are never the harness's.

    python -m bench.loadgen SPEC.json OUT.json

Four modes, over plain `http.client` or a bare socket (a persistent connection per thread; far
cheaper per request than a full-featured client, so more of the box is left to the system under
test):

- `burst`: `count` signed triggers, closed loop over `concurrency` threads, within `max_seconds`;
- `paced`: signed triggers offered at `rate` per second for `seconds` (open loop: a request's
  send time does not wait for earlier answers, unless all `concurrency` threads are busy);
- `poll`: GET each of `paths` in turn at `rate` per second, until SIGTERM or `max_seconds`;
- `flood`: `concurrency` keep-alive connections, closed loop, for `seconds`, each sending signed
  triggers as fast as it can and sending the same delivery again at once after a 429, a 503 or
  no answer (as many webhook senders do); refusals are counted, not recorded one by one.

Triggers are signed (Standard Webhooks) before the clock starts. Every request is recorded as
`[sent_at, latency_s, status, run_id, retry_after]` (status 0: no answer, e.g. a timeout).
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: A webhook sender's patience (GitHub waits 10 s).
REQUEST_TIMEOUT_S = 10.0

Record = list[Any]
Request = tuple[str, str, bytes | None, dict[str, str]]


class Client:
    """One keep-alive connection (gunicorn's sync workers close it; it reopens on demand)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.connection = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)

    def send(self, request: Request) -> Record:
        method, path, body, headers = request
        sent = time.time()
        start = time.perf_counter()
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = self._connect()
            return [sent, time.perf_counter() - start, 0, "", ""]
        latency = time.perf_counter() - start
        if response.will_close:
            self.connection.close()
        run_id = ""
        if response.status in (200, 202) and method == "POST":
            with contextlib.suppress(ValueError):
                run_id = json.loads(data).get("run_id") or ""
        retry_after = response.getheader("Retry-After") or ""
        return [sent, latency, response.status, run_id, retry_after]


def signed_triggers(spec: dict[str, Any]) -> list[Request]:
    """`count` distinct signed deliveries (distinct webhook-ids, so none is a replay)."""
    from app.demo import signed_headers

    path = f"/api/triggers/webhook/{spec['workflow_id']}"
    requests: list[Request] = []
    for index in range(spec["count"]):
        body = json.dumps({"amount": index % 200, "customer": f"c-{index}", "seq": index})
        headers = signed_headers(spec["secret"], body)
        requests.append(("POST", path, body.encode(), headers))
    return requests


def burst(spec: dict[str, Any], stop: threading.Event) -> list[Record]:
    requests = signed_triggers(spec)
    deadline = time.monotonic() + spec["max_seconds"]
    counter = itertools.count()
    records: list[Record] = []
    lock = threading.Lock()

    def work() -> None:
        client = Client(spec["base_url"])
        mine: list[Record] = []
        while not stop.is_set() and time.monotonic() < deadline:
            index = next(counter)
            if index >= len(requests):
                break
            mine.append(client.send(requests[index]))
        with lock:
            records.extend(mine)

    _run_threads(work, spec["concurrency"], spec["max_seconds"] + REQUEST_TIMEOUT_S + 5)
    return records


def paced(spec: dict[str, Any], requests: list[Request], stop: threading.Event) -> list[Record]:
    """Offer `requests` at `rate` per second; each record gets its scheduled time appended."""
    todo: queue.Queue[tuple[float, Request] | None] = queue.Queue()
    records: list[Record] = []
    lock = threading.Lock()
    concurrency = spec["concurrency"]

    def work() -> None:
        client = Client(spec["base_url"])
        mine: list[Record] = []
        while (item := todo.get()) is not None:
            scheduled, request = item
            mine.append([*client.send(request), scheduled])
        with lock:
            records.extend(mine)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start = time.time() + 0.05
    interval = 1.0 / spec["rate"]
    for index, request in enumerate(requests):
        if stop.is_set():
            break
        scheduled = start + index * interval
        pause = scheduled - time.time()
        if pause > 0:
            stop.wait(pause)
        todo.put((scheduled, request))
    for _ in threads:
        todo.put(None)
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT_S + 5)
    return records


def paced_triggers(spec: dict[str, Any], stop: threading.Event) -> list[Record]:
    count = int(spec["rate"] * spec["seconds"])
    return paced(spec, signed_triggers({**spec, "count": count}), stop)


def poll(spec: dict[str, Any], stop: threading.Event) -> list[Record]:
    headers = {"Authorization": f"Bearer {spec['api_key']}"}
    count = int(spec["rate"] * spec["max_seconds"])
    paths = itertools.cycle(spec["paths"])
    requests: list[Request] = [("GET", next(paths), None, headers) for _ in range(count)]
    return paced(spec, requests, stop)


def _run_threads(target: Any, count: int, timeout: float) -> None:
    threads = [threading.Thread(target=target, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))


class RawClient:
    """One keep-alive connection over a bare socket, sending prebuilt request bytes: the flood's
    senders share the box with the system under test, so each request must cost them little.
    Reads an answer as far as its status, Retry-After and body; reconnects when it closes."""

    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.sock: socket.socket | None = None
        self.buffer = b""

    def send(self, data: bytes) -> Record:
        sent = time.time()
        start = time.perf_counter()
        try:
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=REQUEST_TIMEOUT_S)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.sendall(data)
            status, headers, body = self._answer(self.sock)
        except (OSError, ValueError):
            self._close()
            return [sent, time.perf_counter() - start, 0, "", ""]
        latency = time.perf_counter() - start
        if headers.get(b"connection", b"").lower() == b"close":
            self._close()
        run_id = ""
        if status in (200, 202):
            with contextlib.suppress(ValueError, AttributeError):
                run_id = json.loads(body).get("run_id") or ""
        return [sent, latency, status, run_id, headers.get(b"retry-after", b"").decode()]

    def _answer(self, sock: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self.buffer += self._recv(sock)
        head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get(b"content-length", b"0"))
        while len(self.buffer) < length:
            self.buffer += self._recv(sock)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body

    @staticmethod
    def _recv(sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("the connection closed mid-answer")
        return chunk

    def _close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buffer = None, b""


def flood(spec: dict[str, Any], stop: threading.Event) -> dict[str, Any]:
    """Closed loop, every connection as fast as it can; a refused delivery is sent again at
    once (the same webhook-id: a real sender retries the same message). Records the final
    answer of each delivery; refusals and failed sends are counted, with a sample of their
    latencies."""
    parts = urlsplit(spec["base_url"])
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    deliveries = [_as_bytes(request, host) for request in signed_triggers(spec)]
    deadline = time.monotonic() + spec["seconds"]
    counter = itertools.count()
    records: list[Record] = []
    retried: dict[str, int] = {}
    with_retry_after = 0
    refusal_latency: list[float] = []
    lock = threading.Lock()

    def work() -> None:
        nonlocal with_retry_after
        client = RawClient(host, port)
        mine: list[Record] = []
        counts: dict[str, int] = {}
        told_when = 0
        latencies: list[float] = []
        while not stop.is_set() and time.monotonic() < deadline:
            index = next(counter)
            if index >= len(deliveries):
                break
            while not stop.is_set() and time.monotonic() < deadline:
                record = client.send(deliveries[index])
                if record[2] not in (0, 429, 503):
                    mine.append(record)
                    break
                counts[str(record[2])] = counts.get(str(record[2]), 0) + 1
                told_when += 1 if record[4] else 0
                if len(latencies) < 5000:
                    latencies.append(record[1])
        with lock:
            records.extend(mine)
            for status, count in counts.items():
                retried[status] = retried.get(status, 0) + count
            with_retry_after += told_when
            refusal_latency.extend(latencies)

    _run_threads(work, spec["concurrency"], spec["seconds"] + REQUEST_TIMEOUT_S + 5)
    return {
        "records": records,
        "retried": retried,
        "retried_with_retry_after": with_retry_after,
        "retried_latency_sample": refusal_latency,
    }


def _as_bytes(request: Request, host: str) -> bytes:
    method, path, body, headers = request
    body = body or b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]  # content-type included
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


MODES = {"burst": burst, "paced": paced_triggers, "poll": poll, "flood": flood}


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.time()
    outcome = MODES[spec["mode"]](spec, stop)
    result = outcome if isinstance(outcome, dict) else {"records": outcome}
    Path(out_path).write_text(json.dumps({"started": started, "finished": time.time(), **result}))


# -- the harness side ----------------------------------------------------------------------


class LoadGenerator:
    """Runs `python -m bench.loadgen` in its own process group and reads what it recorded."""

    def __init__(self, name: str, spec: dict[str, Any], workdir: Path) -> None:
        self.spec_path = workdir / f"loadgen-{name}.spec.json"
        self.out_path = workdir / f"loadgen-{name}.out.json"
        self.log_path = workdir / f"loadgen-{name}.log"
        self.spec_path.write_text(json.dumps(spec))
        self.out_path.unlink(missing_ok=True)
        self.process: subprocess.Popen[bytes] | None = None
        self._children_cpu = 0.0

    def start(self) -> LoadGenerator:
        self._children_cpu = _children_cpu_s()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.loadgen", str(self.spec_path), str(self.out_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def wait(self, timeout: float) -> dict[str, Any]:
        """Its records; stopped with SIGTERM (then SIGKILL) if it outlasts `timeout`."""
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        return self.result()

    def stop(self, grace: float = 15) -> dict[str, Any]:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.result()

    def result(self) -> dict[str, Any]:
        if not self.out_path.exists():
            log = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the load generator wrote no results:\n{log}")
        loaded: dict[str, Any] = json.loads(self.out_path.read_text())
        # Its own CPU (it was reaped by now): what the load generation took from the box.
        loaded["cpu_s"] = round(_children_cpu_s() - self._children_cpu, 3)
        return loaded


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
