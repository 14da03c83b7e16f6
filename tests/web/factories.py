"""Definitions and runs for the HTTP tests, made through the service functions.

Workflow ids are unique per call: parsed definitions are cached per (database URL, workflow_id,
version) for the life of the process (app/workflows/store.py), and the PostgreSQL tests of
`pg_client` share one database that nothing empties. (`database_url` gives every other test an
empty database and forgets those copies: tests/conftest.py.)
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.safe_http import make_http_client
from app.workflows import NodeRef, StartedRun, save_workflow, start_run
from app.workflows.invoke import execute_node


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def two_step(workflow_id: str | None = None, *, value: str = "one") -> dict[str, Any]:
    """A transform then another: always succeeds, no I/O."""
    return {
        "workflow_id": workflow_id or unique_id("two-step"),
        "name": "Two steps",
        "nodes": [
            {
                "id": "first",
                "type": "transform",
                "params": {"values": {"v": value}},
                "next": "last",
            },
            {"id": "last", "type": "transform", "params": {"values": {"v": "{{ nodes.first.v }}"}}},
        ],
    }


def fetch_then_shape(url: str) -> dict[str, Any]:
    """Fetch a URL (one attempt), then shape its JSON: fails when the URL answers an error."""
    return {
        "workflow_id": unique_id("fetch"),
        "nodes": [
            {"id": "fetch", "type": "data_fetch", "params": {"url": url}, "next": "shape"},
            {
                "id": "shape",
                "type": "transform",
                "params": {"values": {"got": "{{ nodes.fetch.json.ok }}"}},
            },
        ],
    }


def save(sessions: sessionmaker[Session], definition: dict[str, Any]) -> str:
    with sessions.begin() as session:
        save_workflow(session, definition)
    return str(definition["workflow_id"])


def start(sessions: sessionmaker[Session], workflow_id: str, payload: Any = None) -> StartedRun:
    """A queued run; nothing published (the tests drive it with `drive`)."""
    with sessions.begin() as session:
        return start_run(session, workflow_id, payload if payload is not None else {})


def drive(
    sessions: sessionmaker[Session], settings: Settings, refs: list[NodeRef], limit: int = 50
) -> None:
    """Run node messages one after another, like a single worker, until none is left."""
    queue = list(refs)
    with make_http_client(settings) as http:
        for _ in range(limit):
            if not queue:
                return
            successors = execute_node(sessions, settings, http, queue.pop(0))
            queue.extend(successors)
    raise AssertionError("the run did not settle")
