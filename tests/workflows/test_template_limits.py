"""Rendering a node's params counts against its timeout, and the sandbox caps a template's work.

The pytest main thread has SIGALRM, as a prefork worker's child does; a thread of its own has
not, as a threads pool has not.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app import drivers
from app.config import Settings
from app.engine import sandbox, templating
from app.engine.schema import WorkflowDefinition
from app.engine.validation import validate_definition
from app.workflows import get_run
from app.workflows.execution import Lease, Outcome
from app.workflows.invoke import invoke_driver
from tests.workflows.conftest import Driver

BURN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def transform(node_id: str, values: dict[str, Any], **node: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "transform", "params": {"values": values}, **node}


def lease_of(nodes: list[dict[str, Any]]) -> Lease:
    """A lease on the first node, its definition parsed but not validated (so that a template
    that saving refuses can still reach the driver, as one saved before the check would)."""
    definition = WorkflowDefinition.model_validate({"workflow_id": "limits", "nodes": nodes})
    return Lease(
        run_id=str(uuid.uuid4()),
        node_id=nodes[0]["id"],
        attempt=1,
        redeliveries=0,
        workflow_id="limits",
        definition=definition,
        run_input={"lead": {"name": "Ada"}},
    )


def timed_invoke(lease: Lease, settings: Settings, http: httpx.Client) -> tuple[Outcome, float]:
    started = time.monotonic()
    outcome = invoke_driver(lease, settings, http)
    return outcome, time.monotonic() - started


@pytest.fixture
def uncapped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the step budget, so that only the node's timeout can stop the burning template."""
    monkeypatch.setattr(sandbox, "MAX_TEMPLATE_STEPS", 10**12)


def test_a_burning_template_fails_its_node_on_the_step_budget(
    settings: Settings, http: httpx.Client
) -> None:
    lease = lease_of([transform("burn", {"x": BURN}, timeout_s=1)])
    outcome, took = timed_invoke(lease, settings, http)
    assert not outcome.succeeded
    assert outcome.error is not None
    assert outcome.error.startswith("params.values.x: template exceeded 100000 loop iterations")
    assert took < 3


@pytest.mark.usefixtures("uncapped")
def test_rendering_counts_against_the_node_timeout(settings: Settings, http: httpx.Client) -> None:
    lease = lease_of([transform("burn", {"x": BURN}, timeout_s=1)])
    outcome, took = timed_invoke(lease, settings, http)
    assert outcome == Outcome(
        succeeded=False,
        error="timed out after 1s while rendering the params",
        retryable=True,
    )
    assert took < 3


@pytest.mark.usefixtures("uncapped")
def test_rendering_stops_at_the_timeout_in_a_thread_without_sigalrm(
    settings: Settings, http: httpx.Client
) -> None:
    lease = lease_of([transform("burn", {"x": BURN}, timeout_s=1)])
    results: list[tuple[Outcome, float]] = []
    thread = threading.Thread(target=lambda: results.append(timed_invoke(lease, settings, http)))
    thread.start()
    thread.join(timeout=10)
    [(outcome, took)] = results
    assert outcome.error == "timed out after 1s while rendering the params"
    assert outcome.retryable
    assert took < 3


def test_self_in_a_template_fails_the_node_with_a_template_error_and_no_traceback(
    settings: Settings, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    lease = lease_of([transform("shape", {"x": "{{ self }}"})])
    with caplog.at_level(logging.DEBUG):
        outcome = invoke_driver(lease, settings, http)
    assert outcome.error == (
        "params.values.x: `self` is not available: templates see trigger, nodes, run and agent"
        " in template '{{ self }}'"
    )
    assert not outcome.retryable
    assert not [record for record in caplog.records if record.exc_info]


def test_an_object_that_is_not_data_fails_the_node_with_a_template_error(
    settings: Settings, http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    lease = lease_of([transform("shape", {"pairs": "{{ trigger.lead.items() }}"})])
    outcome = invoke_driver(lease, settings, http)
    assert outcome.error is not None
    assert outcome.error.startswith("params.values.pairs: the value is a dict_items, not data")
    assert not [record for record in caplog.records if record.exc_info]


def test_saving_a_template_with_self_is_an_invalid_template_at_the_params_path() -> None:
    raw = {"workflow_id": "selfish", "nodes": [transform("shape", {"x": "Hi {{ self }}"})]}
    _, problems = validate_definition(raw, drivers.param_schemas())
    assert [problem.to_dict() for problem in problems] == [
        {
            "code": "invalid_template",
            "path": "nodes[0].params.values.x",
            "message": "`self` is not available: templates see trigger, nodes, run and agent",
        }
    ]


def test_the_context_names_saving_accepts_are_those_a_node_sees() -> None:
    lease = lease_of([transform("shape", {"x": 1})])
    assert set(lease.template_context()) == set(templating.CONTEXT_NAMES)


@pytest.mark.usefixtures("uncapped")
def test_a_timed_out_render_is_retried_under_the_nodes_retry_policy(
    worker: Driver, sessions: sessionmaker[Session]
) -> None:
    burn = transform("burn", {"x": BURN}, timeout_s=0.5, retry={"max_attempts": 2, "backoff_s": 0})
    run_id = worker.start({"workflow_id": "retry-burn", "nodes": [burn]})
    worker.drain()
    with sessions() as session:
        run = get_run(session, run_id)
    [node] = run["nodes"]
    assert run["status"] == "failed"
    assert (node["status"], node["attempt"]) == ("failed", 2)
    assert node["error"] == "timed out after 0.5s while rendering the params"


@pytest.mark.usefixtures("uncapped")
def test_a_control_node_run_inline_is_bounded_by_its_timeout(
    worker: Driver, sessions: sessionmaker[Session]
) -> None:
    """`burn` is claimed and run inside `first`'s completion (run_control_node)."""
    nodes = [
        transform("first", {"ok": True}, next="burn"),
        transform("burn", {"x": BURN}, timeout_s=1),
    ]
    run_id = worker.start({"workflow_id": "inline-burn", "nodes": nodes})
    started = time.monotonic()
    worker.drain()
    took = time.monotonic() - started
    with sessions() as session:
        run = get_run(session, run_id)
    by_node = {node["node_id"]: node for node in run["nodes"]}
    assert by_node["first"]["status"] == "succeeded"
    assert by_node["burn"]["error"] == "timed out after 1s while rendering the params"
    assert run["status"] == "failed"
    assert took < 4
