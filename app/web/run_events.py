"""A run's changes as Server-Sent Events (GET /api/runs/<id>/events): a push for dashboards
that would rather not poll (issue 15).

The stream polls the database (every POLL_S, a read-only session per poll, so no connection
is held between polls) and sends what changed: `run` when the run's status changes, `node`
when a node's status or attempt does, then `end` with the whole run, and closes. A finished
run's stream is its `end` alone.

A stream holds one server thread for its whole life, so it is bounded twice: per process
(DUALMCP_RUN_EVENTS_MAX_STREAMS at once; past it 503 with Retry-After, and the client polls
or comes back), and in time (DUALMCP_RUN_EVENTS_MAX_S, then the stream closes and the client
reconnects). Serve it with threaded workers (gunicorn `--threads N`, the gthread class compose
uses) and keep the bound below N: a sync worker would give its only thread to one stream.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from app.engine.schema import TERMINAL_RUN_STATUSES
from app.errors import NotFound
from app.web.schemas import NodeRunOut, RunOut

log = logging.getLogger(__name__)

#: Seconds between two reads of the run.
POLL_S = 0.5
#: Seconds of silence after which a comment line is sent: proxies keep the connection, and a
#: client that went away is noticed by the failed write.
HEARTBEAT_S = 15.0
#: Milliseconds an EventSource waits before reconnecting (the stream's `retry:` field).
RECONNECT_MS = 1000
#: Seconds a client refused for want of a slot should wait (Retry-After).
RETRY_AFTER_S = 5


class StreamSlots:
    """How many streams one process serves at once: a slot is taken before the stream starts
    and given back when the server closes the response, however it ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit) if limit > 0 else None

    def take(self) -> bool:
        return self._free is not None and self._free.acquire(blocking=False)

    def give_back(self) -> None:
        if self._free is not None:
            self._free.release()


def stream_slots(app: Flask, limit: int) -> StreamSlots:
    """The app's slots (one set per app, so per process under gunicorn)."""
    slots: StreamSlots = app.extensions.setdefault("dualmcp.run_event_slots", StreamSlots(limit))
    return slots


def run_events(
    read_run: Callable[[], dict[str, Any]],
    first: dict[str, Any],
    *,
    max_s: float,
    poll_s: float = POLL_S,
    heartbeat_s: float = HEARTBEAT_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[str]:
    """The stream's text, from the run as first read (`first`, app.workflows.get_run's dict)
    until it ends, `read_run` fails, or `max_s` passed."""
    yield f"retry: {RECONNECT_MS}\n\n"
    if first["status"] in TERMINAL_RUN_STATUSES:
        yield _event("end", RunOut, first)
        return
    yield _event("run", RunOut, first)
    status, nodes = first["status"], _node_states(first)
    started = last_sent = clock()
    while (left := max_s - (clock() - started)) > 0:
        sleep(min(poll_s, left))
        try:
            run = read_run()
        except NotFound:
            return  # deleted under the stream: nothing more will come
        except SQLAlchemyError as exc:
            log.warning("run events: the database is unavailable (%s); closing", type(exc).__name__)
            return  # the client reconnects, and is answered 503 while the database is down
        sent = False
        for node in run["nodes"]:
            if nodes.get(node["node_id"]) != (node["status"], node["attempt"]):
                yield _event("node", NodeRunOut, node)
                sent = True
        nodes = _node_states(run)
        if run["status"] in TERMINAL_RUN_STATUSES:
            yield _event("end", RunOut, run)
            return
        if run["status"] != status:
            status = run["status"]
            yield _event("run", RunOut, run)
            sent = True
        now = clock()
        if sent:
            last_sent = now
        elif now - last_sent >= heartbeat_s:
            last_sent = now
            yield ": heartbeat\n\n"


def _node_states(run: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {node["node_id"]: (node["status"], node["attempt"]) for node in run["nodes"]}


def _event(name: str, model: type[RunOut] | type[NodeRunOut], data: dict[str, Any]) -> str:
    """One event; its data is the API's shape of the run or node, as one JSON line."""
    shaped = model.model_validate(data).model_dump(mode="json")
    return f"event: {name}\ndata: {json.dumps(shaped, separators=(',', ':'))}\n\n"
