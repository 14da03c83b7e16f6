"""SQLAlchemy models for every table, and the session factory (never imports web or tasks)."""

from app.models.base import Base, utcnow
from app.models.session import (
    each_statement_commits,
    is_postgresql,
    make_claims_engine,
    make_engine,
    make_session_factory,
    reads_only,
)
from app.models.tables import (
    AgentMCP,
    AgentMessage,
    ApiKey,
    NodeRun,
    OutboxMessage,
    SentEffect,
    StoredCredential,
    TriggerEvent,
    Workflow,
    WorkflowRun,
    WorkflowSchedule,
    WorkflowVersion,
)

__all__ = [
    "AgentMCP",
    "AgentMessage",
    "ApiKey",
    "Base",
    "NodeRun",
    "OutboxMessage",
    "SentEffect",
    "StoredCredential",
    "TriggerEvent",
    "Workflow",
    "WorkflowRun",
    "WorkflowSchedule",
    "WorkflowVersion",
    "each_statement_commits",
    "is_postgresql",
    "make_claims_engine",
    "make_engine",
    "make_session_factory",
    "reads_only",
    "utcnow",
]
