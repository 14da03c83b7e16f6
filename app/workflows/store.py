"""Workflow definitions: validated on save, versioned on every change, cached once loaded.

A workflow with a `tool` block is also a tool: `workflows.tool_name` holds its current tool name,
unique among active workflows (the partial index `uq_workflows_active_tool_name`), and
`list_tool_workflows` / `get_tool_workflow` are how /mcp and agents find them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import drivers
from app.engine.schema import ToolBlock, WorkflowDefinition
from app.engine.validation import Problem, validate_definition
from app.errors import Conflict, DefinitionInvalid, NotFound
from app.models import AgentMCP, Workflow, WorkflowVersion, utcnow
from app.workflows.schedule_sync import restart_schedule, sync_schedule

WorkflowStatus = Literal["active", "paused"]

# A stored version never changes, so a process may keep it for good.
_definitions: dict[tuple[str, str, int], WorkflowDefinition] = {}


def save_workflow(
    session: Session, raw: Mapping[str, Any], *, create_only: bool = False
) -> Workflow:
    """Create the workflow or store a new version; DefinitionInvalid lists every problem.

    With `create_only`, an existing workflow is a Conflict instead of a new version.
    """
    definition = _checked(session, raw)
    stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    workflow = session.get(Workflow, definition.workflow_id, with_for_update=True)
    if workflow is not None and create_only:
        raise Conflict(f"a workflow with id {definition.workflow_id!r} already exists")
    tool_name = definition.tool.name if definition.tool is not None else None
    if workflow is None or workflow.status == "active":
        _check_tool_name_free(session, definition.workflow_id, tool_name)
    fields: dict[str, Any] = {
        "agent_id": definition.agent_id,
        "name": definition.name,
        "workflow_json": stored,
        "trigger_config": definition.trigger.model_dump(mode="json"),
        "tool_name": tool_name,
    }
    if workflow is None:
        now = utcnow()
        workflow = Workflow(
            workflow_id=definition.workflow_id,
            version=1,
            created_at=now,
            updated_at=now,
            **fields,
        )
        try:
            # A savepoint: losing a race with a concurrent create is a Conflict, not a 500.
            with _claiming_tool_name(session, definition.workflow_id, tool_name):
                session.add(workflow)
        except IntegrityError:
            raise Conflict(
                f"workflow {definition.workflow_id!r} was created concurrently; try again"
            ) from None
    else:
        with _claiming_tool_name(session, definition.workflow_id, tool_name):
            for name, value in fields.items():
                setattr(workflow, name, value)
            workflow.version += 1
            workflow.updated_at = utcnow()
    session.add(
        WorkflowVersion(
            workflow_id=definition.workflow_id, version=workflow.version, workflow_json=stored
        )
    )
    session.flush()
    sync_schedule(session, definition.workflow_id, definition.trigger)
    return workflow


def _checked(session: Session, raw: Mapping[str, Any]) -> WorkflowDefinition:
    """The engine's checks, plus one it cannot make without the database: the agent exists."""
    definition, problems = validate_definition(raw, drivers.param_schemas())
    agent_id = raw.get("agent_id") if isinstance(raw, Mapping) else None
    if isinstance(agent_id, str) and session.get(AgentMCP, agent_id) is None:
        problems.append(Problem("unknown_agent", "agent_id", f"no agent with id {agent_id!r}"))
    if problems or definition is None:
        raise DefinitionInvalid(problems)
    return definition


def _check_tool_name_free(session: Session, workflow_id: str, tool_name: str | None) -> None:
    """Conflict naming the other active workflow that already serves `tool_name`."""
    if tool_name is None:
        return
    holder = session.scalar(
        select(Workflow.workflow_id).where(
            Workflow.tool_name == tool_name,
            Workflow.status == "active",
            Workflow.workflow_id != workflow_id,
        )
    )
    if holder is not None:
        raise Conflict(f"tool name {tool_name!r} is already used by workflow {holder!r}")


@contextmanager
def _claiming_tool_name(
    session: Session, workflow_id: str, tool_name: str | None
) -> Iterator[None]:
    """Make the block's changes in a savepoint (begin_nested flushes what is pending first, so
    they must be made inside it): a concurrent claim of the same tool name that the check
    before could not see trips the partial unique index, and is the same Conflict, not a 500.
    Any other IntegrityError is raised as it is."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError:
        _check_tool_name_free(session, workflow_id, tool_name)
        raise


def set_workflow_status(session: Session, workflow_id: str, status: WorkflowStatus) -> Workflow:
    """Pause (no new runs start; runs under way finish) or activate; not a new version."""
    workflow = session.get(Workflow, workflow_id, with_for_update=True)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    if workflow.status != status:
        tool_name = workflow.tool_name
        if status == "active":
            _check_tool_name_free(session, workflow_id, tool_name)
        with _claiming_tool_name(session, workflow_id, tool_name):
            workflow.status = status
            workflow.updated_at = utcnow()
        if status == "active":
            restart_schedule(session, workflow_id)
    return workflow


def list_workflows(session: Session) -> list[Workflow]:
    """Every workflow at its current version, by id (workflows are few; no paging)."""
    return list(session.scalars(select(Workflow).order_by(Workflow.workflow_id)))


def list_versions(session: Session, workflow_id: str) -> list[WorkflowVersion]:
    """The stored versions of a workflow, newest first; NotFound for an unknown workflow."""
    get_workflow(session, workflow_id)
    return list(
        session.scalars(
            select(WorkflowVersion)
            .where(WorkflowVersion.workflow_id == workflow_id)
            .order_by(WorkflowVersion.version.desc())
        )
    )


def workflow_to_dict(
    workflow: Workflow, version: WorkflowVersion | None = None, *, with_definition: bool = True
) -> dict[str, Any]:
    """The workflow as the API shows it, at `version` (a stored snapshot) or the current one."""
    definition = version.workflow_json if version is not None else workflow.workflow_json
    shaped: dict[str, Any] = {
        "workflow_id": workflow.workflow_id,
        "version": version.version if version is not None else workflow.version,
        "status": workflow.status,
        "name": definition.get("name", ""),
        "agent_id": definition.get("agent_id"),
        "created_at": _iso(workflow.created_at),
        "updated_at": _iso(workflow.updated_at),
    }
    if with_definition:
        shaped["definition"] = definition
    return shaped


def version_to_dict(version: WorkflowVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "name": version.workflow_json.get("name", ""),
        "created_at": _iso(version.created_at),
    }


def get_version(session: Session, workflow_id: str, version: int) -> WorkflowVersion:
    """One stored snapshot as saved (not the parsed, cached definition)."""
    row = session.get(WorkflowVersion, (workflow_id, version))
    if row is None:
        get_workflow(session, workflow_id)
        raise NotFound(f"no version {version} of workflow {workflow_id!r}")
    return row


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TriggerTarget:
    """What starting a run needs of a workflow row: read with one narrow Core query, without
    the ORM's identity map or the definition JSON (the trigger path's hottest read)."""

    workflow_id: str
    status: str
    version: int
    trigger_config: dict[str, Any]
    #: Every change to the row moves it, so (version, status, updated_at) tells whether a copy
    #: of this target is still current (app/workflows/triggers.py checks it on PostgreSQL).
    updated_at: datetime
    #: The SHA-256 of the trigger token, for a token webhook (app/workflows/trigger_tokens.py).
    trigger_token_hash: str | None = None


_TRIGGER_TARGET = select(
    Workflow.workflow_id,
    Workflow.status,
    Workflow.version,
    Workflow.trigger_config,
    Workflow.updated_at,
    Workflow.trigger_token_hash,
).where(Workflow.workflow_id == bindparam("p_workflow_id"))

#: The last target each workflow's trigger read, per database. A front-end process checks a
#: signature against its copy without a read; the insert that records the trigger refuses a
#: copy that is no longer current, and the caller then reads again (forget_trigger_target).
_trigger_targets: dict[tuple[str, str], TriggerTarget] = {}
#: Workflows are few; past this many remembered targets the copies are simply dropped.
MAX_REMEMBERED_TARGETS = 4096


def get_trigger_target(session: Session, workflow_id: str) -> TriggerTarget:
    """The workflow's current trigger target, read now (and remembered for the next trigger)."""
    row = session.execute(_TRIGGER_TARGET, {"p_workflow_id": workflow_id}).first()
    if row is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    target = TriggerTarget(
        row.workflow_id,
        row.status,
        row.version,
        row.trigger_config or {},
        row.updated_at,
        row.trigger_token_hash,
    )
    if len(_trigger_targets) >= MAX_REMEMBERED_TARGETS:
        _trigger_targets.clear()
    _trigger_targets[_target_key(session, workflow_id)] = target
    return target


def remembered_trigger_target(session: Session, workflow_id: str) -> TriggerTarget | None:
    """The target the last trigger read, possibly stale: only for callers whose write checks
    it is still current (accept_trigger on PostgreSQL) and that read again when it is not."""
    return _trigger_targets.get(_target_key(session, workflow_id))


def forget_trigger_target(session: Session, workflow_id: str) -> None:
    _trigger_targets.pop(_target_key(session, workflow_id), None)


def forget_cached_copies() -> None:
    """Drop every parsed definition and trigger target this process keeps: for a database
    emptied under a running process (the tests empty one between tests)."""
    _definitions.clear()
    _trigger_targets.clear()


def _target_key(session: Session, workflow_id: str) -> tuple[str, str]:
    return (str(session.get_bind().engine.url), workflow_id)


def get_workflow(session: Session, workflow_id: str) -> Workflow:
    workflow = session.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow


def get_definition(session: Session, workflow_id: str, version: int) -> WorkflowDefinition:
    """One stored version, parsed once per process (per database, for tests and standalone)."""
    key = (str(session.get_bind().engine.url), workflow_id, version)
    definition = _definitions.get(key)
    if definition is None:
        raw = session.scalar(
            select(WorkflowVersion.workflow_json).where(
                WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == version
            )
        )
        if raw is None:
            raise NotFound(f"no version {version} of workflow {workflow_id!r}")
        definition = WorkflowDefinition.model_validate(raw)
        _definitions[key] = definition
    return definition


@dataclass(frozen=True)
class ToolWorkflow:
    """An active workflow served as a tool: which version, and its `tool` block."""

    workflow_id: str
    version: int
    tool: ToolBlock

    @property
    def name(self) -> str:
        return self.tool.name

    @property
    def description(self) -> str:
        return self.tool.description

    @property
    def input_schema(self) -> dict[str, Any]:
        return self.tool.input_schema


_ACTIVE_TOOLS = (
    select(Workflow.workflow_id, Workflow.version, Workflow.tool_name)
    .where(Workflow.status == "active", Workflow.tool_name.is_not(None))
    .order_by(Workflow.tool_name)
)


def list_tool_workflows(session: Session) -> list[ToolWorkflow]:
    """Every active workflow with a tool block, by tool name (what /mcp lists). One narrow
    query, plus one for the definitions this process has not parsed yet, all at once."""
    rows = session.execute(_ACTIVE_TOOLS).all()
    _load_definitions(session, [(row.workflow_id, row.version) for row in rows])
    return [
        tool
        for row in rows
        if (tool := _tool_workflow(session, row.workflow_id, row.version)) is not None
    ]


def get_tool_workflow(session: Session, tool_name: str) -> ToolWorkflow:
    """The one active workflow serving `tool_name`; NotFound when none does (paused, renamed)."""
    row = session.execute(
        select(Workflow.workflow_id, Workflow.version).where(
            Workflow.status == "active", Workflow.tool_name == tool_name
        )
    ).first()
    tool = _tool_workflow(session, row.workflow_id, row.version) if row is not None else None
    if tool is None:
        raise NotFound(f"no active workflow serves the tool {tool_name!r}")
    return tool


def _tool_workflow(session: Session, workflow_id: str, version: int) -> ToolWorkflow | None:
    tool = get_definition(session, workflow_id, version).tool
    return ToolWorkflow(workflow_id, version, tool) if tool is not None else None


def _load_definitions(session: Session, versions: list[tuple[str, int]]) -> None:
    """Parse and cache, with one query, the versions `get_definition` would read one by one."""
    url = str(session.get_bind().engine.url)
    missing = [key for key in versions if (url, *key) not in _definitions]
    if not missing:
        return
    rows = session.execute(
        select(
            WorkflowVersion.workflow_id, WorkflowVersion.version, WorkflowVersion.workflow_json
        ).where(tuple_(WorkflowVersion.workflow_id, WorkflowVersion.version).in_(missing))
    )
    for row in rows:
        _definitions[(url, row.workflow_id, row.version)] = WorkflowDefinition.model_validate(
            row.workflow_json
        )
