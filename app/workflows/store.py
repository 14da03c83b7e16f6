"""Workflow definitions: validated on save, versioned on every change, cached once loaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import drivers
from app.engine.schema import WorkflowDefinition
from app.engine.validation import check_definition
from app.errors import NotFound
from app.models import Workflow, WorkflowVersion, utcnow

# A stored version never changes, so a process may keep it for good.
_definitions: dict[tuple[str, int], WorkflowDefinition] = {}


def save_workflow(session: Session, raw: Mapping[str, Any]) -> Workflow:
    """Create the workflow or store a new version; DefinitionInvalid lists every problem."""
    definition = check_definition(raw, drivers.param_schemas())
    stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    workflow = session.get(Workflow, definition.workflow_id, with_for_update=True)
    if workflow is None:
        workflow = Workflow(workflow_id=definition.workflow_id, version=1)
        session.add(workflow)
    else:
        workflow.version += 1
        workflow.updated_at = utcnow()
    workflow.agent_id = definition.agent_id
    workflow.name = definition.name
    workflow.workflow_json = stored
    workflow.trigger_config = definition.trigger.model_dump(mode="json")
    session.flush()
    session.add(
        WorkflowVersion(
            workflow_id=definition.workflow_id, version=workflow.version, workflow_json=stored
        )
    )
    session.flush()
    return workflow


def get_workflow(session: Session, workflow_id: str) -> Workflow:
    workflow = session.get(Workflow, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow


def get_definition(session: Session, workflow_id: str, version: int) -> WorkflowDefinition:
    """One stored version, parsed once per process."""
    key = (workflow_id, version)
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
