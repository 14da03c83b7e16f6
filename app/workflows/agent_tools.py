"""Workflows as an agent's tools: a call starts one run (source `agent`) and waits for it, bounded.

The agents' toolbox (app/agents/toolbox.py) knows workflow tools only through the
`WorkflowToolSource` protocol: agents sit below workflows, so the worker's runtime passes this
implementation in (app/tasks/runtime.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.agents.schemas import WorkflowTool
from app.agents.toolbox import CallContext, Handler, ToolOutcome, tool_outcome
from app.errors import DualMCPError
from app.llm import ToolSpec
from app.workflows.runs import NodeRef
from app.workflows.tool_runs import ArgumentsInvalid, start_tool_run, tool_definition, wait_for_run

log = logging.getLogger(__name__)

#: Sends node messages after the commit that made them pending (the runtime's dispatcher).
Publish = Callable[[list[NodeRef]], None]


class WorkflowTools:
    """The workflows an agent's config names, as tools it may call (a `WorkflowToolSource`)."""

    def __init__(self, sessions: sessionmaker[Session], publish: Publish) -> None:
        self._sessions = sessions
        self._publish = publish

    def spec(self, entry: WorkflowTool) -> ToolSpec | None:
        """The workflow's `tool` block as a spec; None (logged) when it cannot serve now."""
        try:
            with self._sessions() as session:
                definition = tool_definition(session, entry.workflow_id)
        except DualMCPError as exc:
            log.warning("agent tool: workflow %s unavailable: %s", entry.workflow_id, exc)
            return None
        if definition.tool is None:
            log.warning("agent tool: workflow %s has no tool block", entry.workflow_id)
            return None
        tool = definition.tool
        return ToolSpec(tool.name, tool.description, dict(tool.input_schema))

    def handler(self, workflow_id: str, caller: CallContext, max_chars: int) -> Handler:
        def call(arguments: dict[str, Any], call_key: str, timeout_s: float) -> ToolOutcome:
            started = time.monotonic()
            origin = {
                "agent_id": caller.agent_id,
                "session_id": caller.session_id,
                "turn_id": caller.turn_id,
            }
            try:
                with self._sessions.begin() as session:
                    run = start_tool_run(
                        session,
                        workflow_id,
                        arguments,
                        source="agent",
                        idempotency_key=call_key,
                        origin=origin,
                    )
            except ArgumentsInvalid as exc:
                problems = [
                    {"path": p.path, "code": p.code, "message": p.message} for p in exc.problems
                ]
                return tool_outcome(
                    False, {"error": str(exc), "problems": problems}, started, max_chars
                )
            except DualMCPError as exc:  # unknown or paused workflow, a reused key, ...
                return tool_outcome(False, {"error": str(exc)}, started, max_chars)
            self._publish(run.to_publish)
            result = wait_for_run(self._sessions, run.run_id, timeout_s)
            body = result.structured()
            if not result.finished:
                body["error"] = (
                    f"the run is still {result.status} after {timeout_s:g}s; "
                    "it goes on, its result is not known yet"
                )
            return tool_outcome(result.finished and not result.failed, body, started, max_chars)

        return call
