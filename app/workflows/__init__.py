"""The workflow service: definitions with versions, runs, and the database side of execution.

The front end calls `save_workflow`, `start_run`, `get_run`, `list_runs`, `cancel_run` and
`retry_run`; /mcp and agents find workflow tools with `list_tool_workflows` and
`get_tool_workflow`; the Celery tasks call the functions of `execution`. Every function takes a
session and leaves committing to the caller, so one request or one task step is one transaction.
"""

from app.workflows.retry import retry_run
from app.workflows.runs import (
    InvalidCursor,
    NodeRef,
    StartedRun,
    cancel_run,
    get_run,
    list_runs,
    start_run,
)
from app.workflows.store import (
    ToolWorkflow,
    get_definition,
    get_tool_workflow,
    get_version,
    get_workflow,
    list_tool_workflows,
    list_versions,
    list_workflows,
    save_workflow,
    set_workflow_status,
    version_to_dict,
    workflow_to_dict,
)

__all__ = [
    "InvalidCursor",
    "NodeRef",
    "StartedRun",
    "ToolWorkflow",
    "cancel_run",
    "get_definition",
    "get_run",
    "get_tool_workflow",
    "get_version",
    "get_workflow",
    "list_runs",
    "list_tool_workflows",
    "list_versions",
    "list_workflows",
    "retry_run",
    "save_workflow",
    "set_workflow_status",
    "start_run",
    "version_to_dict",
    "workflow_to_dict",
]
