"""The outside world of the benchmark: an HTTP server on loopback that answers at once.

    python -m bench.echo_server --port 58001

Its own process (asyncio, HTTP/1.1 keep-alive, a fixed small JSON answer to any request), so it
never competes for the GIL of the load generator or the harness. It parses just enough HTTP to
find where a request ends (headers, then Content-Length bytes of body).
"""

from __future__ import annotations

import argparse
import asyncio
import signal

BODY = b'{"ok":true}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"\r\n" + BODY
)
CLOSING_RESPONSE = RESPONSE.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
#: A request head larger than this is not one of ours: the connection is dropped.
MAX_HEAD = 64 * 1024


class EchoProtocol(asyncio.Protocol):
    """Answers every complete request on the connection, in order (pipelining included)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            head = self.buffer[:head_end].lower()
            length = _content_length(head)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            if b"\r\nconnection: close" in head:
                self.transport.write(CLOSING_RESPONSE)
                self.transport.close()
                return
            self.transport.write(RESPONSE)


def _content_length(head: bytes) -> int:
    marker = b"\r\ncontent-length:"
    start = head.find(marker)
    if start < 0:
        return 0
    start += len(marker)
    end = head.find(b"\r\n", start)
    return int(head[start : end if end >= 0 else None].strip() or 0)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = await loop.create_server(EchoProtocol, host, port, backlog=1024, reuse_address=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
