"""The workflow service: definitions with versions, runs, and the database side of execution.

The front end calls `save_workflow`, `start_run`, `get_run`, `cancel_run`; the Celery tasks call
the functions of `execution`. Every function takes a session and leaves committing to the caller,
so one request or one task step is one transaction.
"""

from app.workflows.runs import NodeRef, StartedRun, cancel_run, get_run, start_run
from app.workflows.store import get_definition, get_workflow, save_workflow

__all__ = [
    "NodeRef",
    "StartedRun",
    "cancel_run",
    "get_definition",
    "get_run",
    "get_workflow",
    "save_workflow",
    "start_run",
]
