"""The tools /mcp serves (DESIGN.md: Agents that act): every active workflow with a `tool`
block, `ask_<agent_id>` for every agent exposed as a tool, and `get_run`.

The SDK's low-level `Server` does every protocol detail; tools are rows, not decorated
functions, so each list reads the database (a workflow saved or paused shows at once, in every
process). Calls run on the database and wait with the sync code (in anyio worker threads), and
never longer than `wait_s`: a run still going then is answered with its id, for `get_run`.
HTTP, auth and the event loop are app/web/mcp_mount.py's; the caller's scope arrives in the
`X-Dualmcp-Scope` header, which only the mount sets.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from sqlalchemy.orm import Session, sessionmaker

from app import apikeys
from app.agents.replies import AgentTasks
from app.agents.schemas import SESSION_ID_MAX, SESSION_ID_PATTERN
from app.agents.service import new_session_id
from app.agents.store import get_agent, list_exposed_agents
from app.engine.schema import RESERVED_TOOL_PREFIX
from app.engine.storable_text import unstorable_text_problems
from app.engine.tool_input import input_problems
from app.engine.validation import Problem
from app.errors import Conflict, NotFound
from app.workflows.runs import NodeRef
from app.workflows.store import get_tool_workflow, list_tool_workflows
from app.workflows.tool_runs import (
    ArgumentsInvalid,
    ToolRunResult,
    read_tool_run,
    start_tool_run,
    wait_for_run,
)

__all__ = ["SCOPE_HEADER", "ToolHost", "build_server"]

log = logging.getLogger(__name__)

#: Set by the mount after it checked the API key (any value a client sent is replaced).
SCOPE_HEADER = "x-dualmcp-scope"
GET_RUN = "get_run"
#: MCP's rule for a tool name (SEP-986); an agent whose `ask_<agent_id>` breaks it is not served.
_MCP_TOOL_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")

_GET_RUN_TOOL = types.Tool(
    name=GET_RUN,
    description=(
        "The status and output of a run started by a tool call, for a call that answered with"
        " a run_id while its run was still going."
    ),
    input_schema={
        "type": "object",
        "properties": {"run_id": {"type": "string", "description": "the run_id a call answered"}},
        "required": ["run_id"],
        "additionalProperties": False,
    },
)
_ASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 100_000},
        "session_id": {
            "type": "string",
            "pattern": SESSION_ID_PATTERN,
            "maxLength": SESSION_ID_MAX,
            "description": "continue this conversation (a reply's session_id); new if left out",
        },
    },
    "required": ["message"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class ToolHost:
    """What serving tools needs of its process (the web front end's context)."""

    sessions: sessionmaker[Session]
    #: Sends a started run's node messages, after the commit.
    publish: Callable[[list[NodeRef]], None]
    #: Runs agent turns on a worker; None: the `ask_*` tools answer that agents are unavailable.
    agent_tasks: AgentTasks | None
    #: False when too much work is queued for another run (app/web/admission.py decides).
    admits_run: Callable[[], bool]
    #: Seconds a call waits for its run or reply (DUALMCP_MCP_WAIT_S).
    wait_s: float


def build_server(host: ToolHost) -> Server[Any]:
    """A low-level SDK server whose tools come from `host`'s database on every list."""
    tools = _Tools(host)
    return Server(
        "dualmcp",
        version=_version(),
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
    )


class _Tools:
    def __init__(self, host: ToolHost) -> None:
        self.host = host
        #: Agents already logged as not servable, so each is logged once per process.
        self._unservable: set[str] = set()

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await anyio.to_thread.run_sync(self._catalog))

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        scope = _caller_scope(ctx)
        if scope is None:
            return tool_error("calling tools needs an API key with the invoke scope")
        if not apikeys.allows(scope, "invoke"):
            return tool_error(f"this key has the {scope} scope; calling tools needs invoke")
        arguments = dict(params.arguments or {})
        if params.name == GET_RUN:
            return await anyio.to_thread.run_sync(self._get_run, arguments)
        if params.name.startswith(RESERVED_TOOL_PREFIX):
            agent_id = params.name.removeprefix(RESERVED_TOOL_PREFIX)
            return await anyio.to_thread.run_sync(self._ask, agent_id, arguments)
        return await anyio.to_thread.run_sync(self._run_workflow, params.name, arguments)

    def _catalog(self) -> list[types.Tool]:
        with self.host.sessions() as session:
            workflows = list_tool_workflows(session)
            agents = list_exposed_agents(session)
        served = [_GET_RUN_TOOL]
        for agent in agents:
            name = RESERVED_TOOL_PREFIX + agent.agent_id
            if not _MCP_TOOL_NAME.fullmatch(name):
                self._skip_agent(agent.agent_id)
                continue
            description = f"Ask the agent {agent.agent_name!r}"
            description += f": {agent.description}" if agent.description else "."
            description += " Answers with its reply and the session_id to continue."
            served.append(types.Tool(name=name, description=description, input_schema=_ASK_SCHEMA))
        served.extend(
            types.Tool(
                name=workflow.name,
                description=workflow.description,
                input_schema=dict(workflow.input_schema),
            )
            for workflow in workflows
        )
        return served

    def _skip_agent(self, agent_id: str) -> None:
        if agent_id not in self._unservable:
            self._unservable.add(agent_id)
            log.warning(
                "agent %r is exposed as a tool but ask_<id> is not a valid MCP tool name"
                " (letters, digits, '.', '_', '-'; at most 128); not served at /mcp",
                agent_id,
            )

    def _run_workflow(self, tool_name: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """One run (source `mcp`), then its result, or its id once `wait_s` ran out."""
        if not self.host.admits_run():
            return tool_error("busy: too much work is queued; retry later")
        try:
            with self.host.sessions.begin() as session:
                workflow = get_tool_workflow(session, tool_name)
                started = start_tool_run(session, workflow.workflow_id, arguments, source="mcp")
        except ArgumentsInvalid as exc:
            return invalid_arguments(exc.problems)
        except NotFound:
            return tool_error(f"no tool named {tool_name!r} (it may have been paused or renamed)")
        except Conflict as exc:  # paused between the lookup and the write
            return tool_error(str(exc))
        self.host.publish(started.to_publish)
        return run_result(wait_for_run(self.host.sessions, started.run_id, self.host.wait_s))

    def _get_run(self, arguments: dict[str, Any]) -> types.CallToolResult:
        problems = input_problems(_GET_RUN_TOOL.input_schema, arguments, prefix="arguments")
        if problems:
            return invalid_arguments(problems)
        try:
            return run_result(read_tool_run(self.host.sessions, arguments["run_id"]))
        except NotFound as exc:
            return tool_error(str(exc))

    def _ask(self, agent_id: str, arguments: dict[str, Any]) -> types.CallToolResult:
        """One turn on an agent worker; its reply, or its task id once `wait_s` ran out."""
        problems = input_problems(_ASK_SCHEMA, arguments, prefix="arguments")
        problems += [
            Problem(found["code"], found["path"], found["message"])
            for found in unstorable_text_problems(arguments, "arguments")
        ]
        if problems:
            return invalid_arguments(problems)
        with self.host.sessions() as session:
            try:
                exposed = get_agent(session, agent_id).expose_as_tool
            except NotFound:
                exposed = False
        if not exposed:
            return tool_error(f"no tool named {RESERVED_TOOL_PREFIX + agent_id!r}")
        tasks = self.host.agent_tasks
        if tasks is None:
            return tool_error("agents are unavailable here; retry later")
        session_id = arguments.get("session_id") or new_session_id()
        task_id = tasks.submit(agent_id, session_id, arguments["message"])
        outcome = tasks.outcome(task_id, self.host.wait_s)
        if outcome.state != "done":
            status = "running" if outcome.state == "running" else "queued"
            pending = {"task_id": task_id, "session_id": session_id, "status": status}
            hint = (
                f"the agent is still answering after {self.host.wait_s:g}s; its reply will be in"
                f" the session's memory (session_id {session_id})"
            )
            return structured_result(pending, hint)
        result = outcome.result or {}
        if "reply" not in result:
            error = result.get("error") or {}
            message = str(error.get("message") or "the agent could not answer")
            return structured_result({"session_id": session_id, "error": message}, is_error=True)
        reply = result["reply"]
        shaped = {"reply": reply.get("reply"), "session_id": reply.get("session_id", session_id)}
        shaped.update((key, reply[key]) for key in ("tool_calls", "stopped") if reply.get(key))
        return structured_result(shaped)


def run_result(result: ToolRunResult) -> types.CallToolResult:
    """`{run_id, status, output}` (+ `error`); a run still going says to ask `get_run`."""
    hint = None
    if not result.finished:
        hint = (
            f"run {result.run_id} is still {result.status}; call {GET_RUN} with"
            f' {{"run_id": "{result.run_id}"}} for its output'
        )
    return structured_result(result.structured(), hint, is_error=result.failed)


def structured_result(
    shaped: dict[str, Any], hint: str | None = None, *, is_error: bool = False
) -> types.CallToolResult:
    """Structured content, and the same JSON as text for clients that read only text."""
    content = [types.TextContent(type="text", text=json.dumps(shaped))]
    if hint is not None:
        content.append(types.TextContent(type="text", text=hint))
    return types.CallToolResult(content=content, structured_content=shaped, is_error=is_error)


def invalid_arguments(problems: Iterable[Problem]) -> types.CallToolResult:
    """A tool error naming each bad field (what the schema wants, never the value sent)."""
    listed = [problem.to_dict() for problem in problems]
    lines = "\n".join(f"- {problem['path']}: {problem['message']}" for problem in listed)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"invalid arguments:\n{lines}")],
        structured_content={"error": "invalid_arguments", "problems": listed},
        is_error=True,
    )


def tool_error(message: str) -> types.CallToolResult:
    """A failure the caller (often a model) reads and may recover from; not a protocol error."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=message)], is_error=True
    )


def _caller_scope(ctx: ServerRequestContext[Any]) -> apikeys.Scope | None:
    """The scope the mount found for the request's key; None (no calls) outside HTTP."""
    headers: Mapping[str, str] | None = getattr(ctx.request, "headers", None)
    value = headers.get(SCOPE_HEADER) if headers is not None else None
    return value if value in apikeys.SCOPES else None


def _version() -> str:
    try:
        return importlib.metadata.version("dualmcp")
    except importlib.metadata.PackageNotFoundError:
        return "0"
