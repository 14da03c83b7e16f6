"""SQLAlchemy models for every table, and the session factory (never imports web or tasks)."""

from app.models.base import Base, utcnow
from app.models.session import make_claims_engine, make_engine, make_session_factory
from app.models.tables import (
    AgentMCP,
    AgentMessage,
    ApiKey,
    NodeRun,
    SentEffect,
    TriggerEvent,
    Workflow,
    WorkflowRun,
    WorkflowVersion,
)

__all__ = [
    "AgentMCP",
    "AgentMessage",
    "ApiKey",
    "Base",
    "NodeRun",
    "SentEffect",
    "TriggerEvent",
    "Workflow",
    "WorkflowRun",
    "WorkflowVersion",
    "make_claims_engine",
    "make_engine",
    "make_session_factory",
    "utcnow",
]
