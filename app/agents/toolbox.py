"""The tools one agent turn may call (DESIGN.md: Agents that act): the workflows its config
names, and the allowed tools of the remote MCP servers it names.

A call never raises: whatever goes wrong (bad arguments, a failed run, a timeout, a remote
error) becomes an error result the model reads and may recover from. A workflow is called as a
normal run (source `agent`) under the idempotency key of (turn, call index), so a turn resumed
on another worker finds the run its first try started instead of starting a second one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from app.agents.schemas import McpServerTool, WorkflowTool
from app.errors import DualMCPError
from app.llm import ToolSpec
from app.llm.base import RAW_ARGUMENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolOutcome:
    """A tool call's result as the model reads it, and as memory keeps it."""

    ok: bool
    #: JSON or text, clipped to the configured size.
    content: str
    ms: int


@dataclass(frozen=True)
class CallContext:
    """Who calls: the run a workflow tool starts is linked to the agent, session and turn."""

    agent_id: str
    session_id: str
    turn_id: str


Handler = Callable[[dict[str, Any], str, float], ToolOutcome]


class Toolbox:
    """Tool specs (original names) and how to call each; `call` never raises."""

    def __init__(self, specs: Sequence[ToolSpec], handlers: dict[str, Handler], max_chars: int):
        self.specs = list(specs)
        self._handlers = handlers
        self._max_chars = max_chars

    def call(
        self, name: str, arguments: dict[str, Any], call_key: str, timeout_s: float
    ) -> ToolOutcome:
        """Run one call; `call_key` is unique per (turn, call index)."""
        started = time.monotonic()
        handler = self._handlers.get(name)
        if handler is None:
            error = {"error": f"no tool named {name!r}"}
            return tool_outcome(False, error, started, self._max_chars)
        if RAW_ARGUMENTS in arguments:  # the model's arguments were not a JSON object
            error = {"error": "the arguments must be a JSON object"}
            return tool_outcome(False, error, started, self._max_chars)
        try:
            outcome = handler(arguments, call_key, max(timeout_s, 0.001))
        except Exception as exc:  # a bug must not lose the turn: the model hears of it
            log.exception("tool %s failed unexpectedly", name)
            return tool_outcome(
                False, {"error": f"internal error: {type(exc).__name__}"}, started, self._max_chars
            )
        return ToolOutcome(outcome.ok, clip(outcome.content, self._max_chars), outcome.ms)


def clip(text: str, max_chars: int) -> str:
    """At most `max_chars`, saying how much was cut."""
    if len(text) <= max_chars:
        return text
    note = f"… [{len(text) - max_chars} more characters cut]"
    return text[: max(max_chars - len(note), 0)] + note


def tool_outcome(ok: bool, body: Any, started: float, max_chars: int) -> ToolOutcome:
    """`body` (JSON, or text as it is) clipped, timed from `started`."""
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    return ToolOutcome(ok, clip(text, max_chars), round((time.monotonic() - started) * 1000))


class WorkflowToolSource(Protocol):
    """Workflows as tools (app/workflows/agent_tools.py implements it: agents sit below
    workflows, so the worker passes it in)."""

    def spec(self, entry: WorkflowTool) -> ToolSpec | None:
        """The workflow's tool spec; None when it cannot serve now."""
        ...

    def handler(self, workflow_id: str, caller: CallContext, max_chars: int) -> Handler:
        """Calls the workflow: one run per call, waited for within the call's timeout."""
        ...


#: Calls one remote tool: (name, arguments, timeout_s) -> (ok, result text).
RemoteCall = Callable[[str, dict[str, Any], float], tuple[bool, str]]
#: Opens one remote MCP server for a turn (closed with the ExitStack): its tools and the call.
RemoteOpener = Callable[[McpServerTool, CallContext, ExitStack], tuple[list[ToolSpec], RemoteCall]]


@contextmanager
def open_toolbox(
    tools: Sequence[WorkflowTool | McpServerTool],
    caller: CallContext,
    *,
    workflows: WorkflowToolSource | None,
    remote: RemoteOpener | None,
    max_chars: int,
) -> Iterator[Toolbox]:
    """The turn's toolbox: its workflows' specs read now, remote servers connected for the
    length of the turn (closed on exit). A tool that cannot be offered is left out and logged:
    the turn goes on with the others."""
    specs: list[ToolSpec] = []
    handlers: dict[str, Handler] = {}
    with ExitStack() as stack:
        for entry in tools:
            if isinstance(entry, WorkflowTool):
                if workflows is None:  # a process that cannot publish runs (none runs turns)
                    continue
                spec = workflows.spec(entry)
                if spec is not None and spec.name not in handlers:
                    specs.append(spec)
                    handlers[spec.name] = workflows.handler(entry.workflow_id, caller, max_chars)
                continue
            if remote is None:
                continue
            try:
                remote_specs, call_remote = remote(entry, caller, stack)
            except DualMCPError as exc:
                log.warning("agent %s: MCP server unavailable: %s", caller.agent_id, exc)
                continue
            for spec in remote_specs:
                if spec.name in handlers:
                    log.warning("agent %s: two tools named %s", caller.agent_id, spec.name)
                    continue
                specs.append(spec)
                handlers[spec.name] = _remote_handler(call_remote, spec.name, max_chars)
        yield Toolbox(specs, handlers, max_chars)


def _remote_handler(call_remote: RemoteCall, name: str, max_chars: int) -> Handler:
    def call(arguments: dict[str, Any], _call_key: str, timeout_s: float) -> ToolOutcome:
        started = time.monotonic()
        try:
            ok, text = call_remote(name, arguments, timeout_s)
        except DualMCPError as exc:
            return tool_outcome(False, {"error": str(exc)}, started, max_chars)
        return tool_outcome(ok, text, started, max_chars)

    return call
