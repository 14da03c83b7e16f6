"""A template that would burn a worker fails its node in time, on the real worker (prefork,
concurrency 2), and the worker serves other runs meanwhile (issue 13, section 2)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from tests.integration.conftest import Stack, finished_run, launch

#: 10**10 iterations: the sandbox's step budget stops it.
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
#: 90,000 steps, each rewriting a million characters (about 2 ms): within the step budget, so
#: only the node's timeout stops it (about 3 minutes otherwise).
SLOW_STEPS = (
    "{% for i in range(90000) %}{% set s = ('x' * 1000000) | replace('x', 'y') %}{% endfor %}"
)
ONE_ATTEMPT = {"max_attempts": 1, "backoff_s": 0}


def _burning(workflow_id: str, template: str, *, after: str | None = None) -> dict[str, Any]:
    burn = {
        "id": "burn",
        "type": "transform",
        "params": {"values": {"x": template}},
        "timeout_s": 2,
        "retry": ONE_ATTEMPT,
    }
    if after is None:
        return {"workflow_id": workflow_id, "nodes": [burn]}
    first = {"id": after, "type": "transform", "params": {"values": {"ok": True}}, "next": "burn"}
    return {"workflow_id": workflow_id, "nodes": [first, burn]}


QUICK = {
    "workflow_id": "template-limits-quick",
    "nodes": [{"id": "shape", "type": "transform", "params": {"values": {"n": "{{ trigger.n }}"}}}],
}


def _worker_log(stack: Stack) -> str:
    return "".join(path.read_text(errors="replace") for path in sorted(stack.logs.glob("worker*")))


def test_nested_loops_fail_on_the_step_budget_within_seconds(stack: Stack) -> None:
    started = time.monotonic()
    run = finished_run(stack, launch(stack, _burning("tl-nested", NESTED_LOOPS), {}), timeout=10)
    assert time.monotonic() - started < 10
    burn = run["by_node"]["burn"]
    assert (run["status"], burn["status"], burn["attempt"]) == ("failed", "failed", 1)
    assert burn["error"].startswith("params.values.x: template exceeded 100000 loop iterations")


def test_a_slow_render_fails_at_the_timeout_while_another_run_finishes(stack: Stack) -> None:
    log_before = len(_worker_log(stack))
    started = time.monotonic()
    burning = launch(stack, _burning("tl-slow", SLOW_STEPS), {})
    quick = launch(stack, QUICK, {"n": 7})
    quick_run = finished_run(stack, quick, timeout=10)
    burning_run = finished_run(stack, burning, timeout=10)
    assert time.monotonic() - started < 10
    assert quick_run["status"] == "succeeded"
    assert quick_run["by_node"]["shape"]["output"] == {"n": 7}
    burn = burning_run["by_node"]["burn"]
    assert (burning_run["status"], burn["status"], burn["attempt"]) == ("failed", "failed", 1)
    assert burn["error"] == "timed out after 2s while rendering the params"
    # the quick run did not wait for the burning one: the worker's other process served it
    assert _finished(quick_run) < _finished(burning_run)
    assert "Traceback" not in _worker_log(stack)[log_before:]


def test_a_slow_control_node_run_inline_fails_at_its_timeout(stack: Stack) -> None:
    """`burn` runs inside `first`'s completion (app/workflows/completion.py)."""
    started = time.monotonic()
    run_id = launch(stack, _burning("tl-inline", SLOW_STEPS, after="first"), {})
    run = finished_run(stack, run_id, timeout=15)
    assert time.monotonic() - started < 15
    assert run["by_node"]["first"]["status"] == "succeeded"
    assert run["by_node"]["burn"]["error"] == "timed out after 2s while rendering the params"
    assert run["status"] == "failed"


def _finished(run: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(run["finished_at"])
