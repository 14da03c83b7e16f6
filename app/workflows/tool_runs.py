"""Workflows called as tools (by an MCP client or an agent): start one run, wait for it for a
bounded time, and answer the way tool callers read it: `{"run_id", "status", "output"}`.

A tool call is a normal run (source `mcp` or `agent`). Its arguments are checked against the
workflow's `tool.input_schema` before anything is written; bad ones start no run. With an
idempotency key (an agent turn's call index) a repeated call returns the first call's run, so
a turn resumed on another worker never starts a second one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from app.engine.schema import TERMINAL_RUN_STATUSES, WorkflowDefinition
from app.engine.storable_text import unstorable_text_problems
from app.engine.tool_input import input_problems, tool_input_problems
from app.engine.validation import Problem
from app.errors import Conflict, DualMCPError, NotFound
from app.models import NodeRun, WorkflowRun, reads_only
from app.workflows.runs import NodeRef, parse_run_id, start_run
from app.workflows.store import get_definition, get_workflow
from app.workflows.triggers import Source, accept_trigger

#: How often a waiting caller looks at the run: soon at first (most tool runs take tens of
#: milliseconds), then less and less often, at most every quarter second: about 75 narrow reads
#: over a 20 s wait.
_FIRST_PAUSE_S = 0.005
_GROWTH = 1.3
_MAX_PAUSE_S = 0.25


class ArgumentsInvalid(DualMCPError):
    """A tool call's arguments do not match the workflow's input schema; no run started."""

    def __init__(self, problems: list[Any]) -> None:
        self.problems = problems
        fields = ", ".join(sorted({problem.path for problem in problems}))
        super().__init__(f"invalid arguments: {fields}")


@dataclass(frozen=True)
class ToolRunStarted:
    run_id: str
    #: True when the idempotency key was seen before: `run_id` is the first call's run.
    duplicate: bool
    #: Node messages to publish after the commit.
    to_publish: list[NodeRef] = field(default_factory=list)


@dataclass(frozen=True)
class ToolRunResult:
    """A run as a tool caller sees it, finished or not."""

    run_id: str
    status: str
    #: The outputs of the run's last finished nodes, by node id (when it succeeded).
    output: dict[str, Any] | None = None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "cancelled")

    def structured(self) -> dict[str, Any]:
        """`{"run_id", "status", "output"}`; `error` too when it failed; no output while it runs."""
        shaped: dict[str, Any] = {"run_id": self.run_id, "status": self.status}
        if self.finished:
            shaped["output"] = self.output
        if self.error is not None:
            shaped["error"] = self.error
        return shaped


def tool_definition(session: Session, workflow_id: str) -> WorkflowDefinition:
    """The workflow's current definition (cached per process); Conflict when it is paused, so
    a paused workflow is neither offered nor called as a tool."""
    workflow = get_workflow(session, workflow_id)
    if workflow.status != "active":
        raise Conflict(f"workflow {workflow_id!r} is {workflow.status}")
    return get_definition(session, workflow_id, workflow.version)


def check_arguments(definition: WorkflowDefinition, arguments: Any) -> None:
    """ArgumentsInvalid listing every problem when the arguments break the input schema."""
    if definition.tool is not None:
        problems = tool_input_problems(definition.tool, arguments, prefix="arguments")
    else:
        problems = input_problems({"type": "object"}, arguments, prefix="arguments")
    # What the database cannot store (a NUL, a lone surrogate) is a bad argument, not a 500.
    problems += [
        Problem(found["code"], found["path"], found["message"])
        for found in unstorable_text_problems(arguments, "arguments")
    ]
    if problems:
        raise ArgumentsInvalid(problems)


def start_tool_run(
    session: Session,
    workflow_id: str,
    arguments: dict[str, Any],
    *,
    source: Source,
    idempotency_key: str | None = None,
    origin: dict[str, Any] | None = None,
) -> ToolRunStarted:
    """Check the arguments, then write the run in the caller's transaction; publish after commit.
    NotFound for an unknown workflow, Conflict for a paused one, ArgumentsInvalid. With an
    idempotency key the known call comes first (accept_trigger's order): a resumed agent turn
    gets its first run back even if the workflow was paused or its schema changed since."""
    if idempotency_key is None:
        check_arguments(tool_definition(session, workflow_id), arguments)
        started = start_run(session, workflow_id, arguments, source=source, origin=origin)
        return ToolRunStarted(started.run_id, duplicate=False, to_publish=started.to_publish)
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":")).encode()
    accepted = accept_trigger(
        session,
        workflow_id,
        idempotency_key,
        canonical,
        arguments,
        source=source,
        origin=origin,
        check=check_arguments,
    )
    return ToolRunStarted(accepted.run_id, accepted.duplicate, accepted.to_publish)


def wait_for_run(
    sessions: sessionmaker[Session],
    run_id: str,
    timeout_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> ToolRunResult:
    """The run once it finished, or as it is when `timeout_s` ran out. Looks with a backoff
    (5 ms, growing to 250 ms), one narrow read each time: never a tight loop on the database."""
    deadline = time.monotonic() + timeout_s
    pause = _FIRST_PAUSE_S
    while True:
        result = read_tool_run(sessions, run_id)
        left = deadline - time.monotonic()
        if result.finished or left <= 0:
            return result
        sleep(min(pause, left))
        pause = min(pause * _GROWTH, _MAX_PAUSE_S)


def read_tool_run(sessions: sessionmaker[Session], run_id: str) -> ToolRunResult:
    """The run's status; with its output (or error) once it finished. NotFound if unknown."""
    with reads_only(sessions) as session:
        connection = session.connection()
        run = connection.execute(_RUN_STATUS, {"p_run_id": parse_run_id(run_id)}).first()
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        if run.status not in TERMINAL_RUN_STATUSES:
            return ToolRunResult(run_id, run.status)
        if run.status != "succeeded":
            return ToolRunResult(run_id, run.status, error=run.error or run.status)
        nodes = connection.execute(_SUCCEEDED_NODES, {"p_run_id": run.run_id}).all()
        definition = get_definition(session, run.workflow_id, run.workflow_version)
    return ToolRunResult(run_id, run.status, output=last_outputs(definition, nodes))


def last_outputs(definition: WorkflowDefinition, nodes: Sequence[Any]) -> dict[str, Any]:
    """The outputs of the succeeded nodes none of whose successors succeeded: where each
    path the run took ended. Keyed by node id, in definition order."""
    succeeded = {row.node_id: row.output for row in nodes}
    order = {node.id: index for index, node in enumerate(definition.nodes)}
    last = {
        node_id: output
        for node_id, output in succeeded.items()
        if node_id not in definition.nodes_by_id
        or not any(s in succeeded for s in definition.node(node_id).successor_ids)
    }
    return dict(sorted(last.items(), key=lambda item: order.get(item[0], len(order))))


_runs, _node_runs = cast(Table, WorkflowRun.__table__), cast(Table, NodeRun.__table__)
_RUN_STATUS = select(
    _runs.c.run_id, _runs.c.workflow_id, _runs.c.workflow_version, _runs.c.status, _runs.c.error
).where(_runs.c.run_id == bindparam("p_run_id"))
_SUCCEEDED_NODES = select(_node_runs.c.node_id, _node_runs.c.output).where(
    _node_runs.c.run_id == bindparam("p_run_id"), _node_runs.c.status == "succeeded"
)
