"""Every table of DESIGN.md (Data), in SQLAlchemy 2.x `Mapped[]` style.

Seed table names are kept (`agent_mcps`, `workflows`). Relationships are left out on purpose:
data functions query by id and never walk lazy attributes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, JSONType, UTCDateTime, utcnow

#: JSONType whose Python None is SQL NULL (JSONType writes JSON `null`).
_JSON_OR_NULL = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class AgentMCP(Base):
    """An agent: its LLM config, personality and rolling memory summary (seed table)."""

    __tablename__ = "agent_mcps"

    agent_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_name: Mapped[str] = mapped_column(String(256))
    llm_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    memory_context: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    personality_traits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    #: What the agent may call: workflows and remote MCP servers (app/agents/tools.py).
    tools: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    #: Served at /mcp as the tool `ask_<agent_id>`.
    expose_as_tool: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AgentMessage(Base):
    """One message of an agent's conversation memory: the durable copy behind the Redis cache."""

    __tablename__ = "agent_messages"
    __table_args__ = (
        Index("ix_agent_messages_session", "agent_id", "session_id", "id"),
        Index("ix_agent_messages_turn", "turn_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(
        ForeignKey("agent_mcps.agent_id", ondelete="CASCADE"), index=False
    )
    session_id: Mapped[str] = mapped_column(String(256))
    #: user, assistant, or tool (a tool call's result).
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    #: An assistant message's tool calls: [{"id", "name", "arguments"}].
    tool_calls: Mapped[list[Any] | None] = mapped_column(JSONType, nullable=True)
    #: A tool message's call: {"id", "name", "ok", "ms"}.
    tool_result: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    #: The turn (agent task) that wrote the message: a resumed turn finds what it did.
    turn_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Workflow(Base):
    """A workflow's current definition (seed table); every version is kept in workflow_versions."""

    __tablename__ = "workflows"
    __table_args__ = (
        # One active workflow per tool name: MCP clients and agents call tools by name.
        Index(
            "uq_workflows_active_tool_name",
            "tool_name",
            unique=True,
            postgresql_where=text("status = 'active' AND tool_name IS NOT NULL"),
            sqlite_where=text("status = 'active' AND tool_name IS NOT NULL"),
        ),
    )

    workflow_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_mcps.agent_id", ondelete="SET NULL"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(256), default="")
    workflow_json: Mapped[dict[str, Any]] = mapped_column(JSONType)
    trigger_config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    version: Mapped[int] = mapped_column(Integer, default=1)
    #: The current version's `tool.name`, when it has a tool block (served at /mcp).
    tool_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: Hex SHA-256 of the trigger token, when the trigger is a token webhook; never the token
    #: (app/workflows/trigger_tokens.py).
    trigger_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WorkflowVersion(Base):
    """An immutable snapshot of a definition: a run executes the version it started with."""

    __tablename__ = "workflow_versions"

    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("workflows.workflow_id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    workflow_json: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkflowRun(Base):
    """One execution of one workflow version."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        ForeignKeyConstraint(
            ["workflow_id", "workflow_version"],
            ["workflow_versions.workflow_id", "workflow_versions.version"],
        ),
        Index("ix_workflow_runs_workflow_created", "workflow_id", "created_at"),
        Index("ix_workflow_runs_status_created", "status", "created_at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    workflow_id: Mapped[str] = mapped_column(String(128))
    workflow_version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    input: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger_event_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: How the run started: webhook, schedule, api, mcp, agent or retry (None: before 0005).
    source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: Who started it, when the source says more: {"agent_id", "session_id", "turn_id"}, ...
    origin: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class NodeRun(Base):
    """One node of one run: the state machine's row, and the outbox of node messages.

    A `pending` (or due `retrying`) row is work to publish; the sweeper republishes rows whose
    `published_at` is old, and returns `running` rows with an expired lease to `pending`.
    """

    __tablename__ = "node_runs"
    __table_args__ = (
        Index("ix_node_runs_status_next_attempt", "status", "next_attempt_at"),
        Index("ix_node_runs_status_lease", "status", "lease_expires_at"),
    )

    run_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workflow_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    node_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    #: Attempts made before the run was resumed from this node: its retry policy counts from here.
    prior_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    redeliveries: Mapped[int] = mapped_column(Integer, default=0)
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The earlier attempts, oldest first: [{attempt, started_at, finished_at, error}], appended
    #: in SQL when another attempt follows (node_runs.py); NULL until one does, so the success
    #: path writes nothing here. SQL NULL, never JSON null: the append starts from COALESCE.
    attempts: Mapped[list[Any] | None] = mapped_column(_JSON_OR_NULL, nullable=True)


class TriggerEvent(Base):
    """A received trigger; (workflow_id, idempotency_key) is unique, so a repeat finds the first."""

    __tablename__ = "trigger_events"
    __table_args__ = (UniqueConstraint("workflow_id", "idempotency_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(256))
    request_hash: Mapped[str] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class SentEffect(Base):
    """A side effect already done (email, SMS), so a re-run of its node does not do it again."""

    __tablename__ = "sent_effects"

    idempotency_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    node_type: Mapped[str] = mapped_column(String(64))
    provider_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: The node's output when it was done, returned again by a re-run instead of doing it twice.
    output: Mapped[Any] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A stored API key: only its SHA-256 is kept (app/apikeys.py)."""

    __tablename__ = "api_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkflowSchedule(Base):
    """When a `schedule` trigger fires next, and the last tick it fired (one row per workflow).

    Kept in step with the workflow's trigger when it is saved. Beat's task claims due rows with
    FOR UPDATE SKIP LOCKED and moves `next_fire_at` past now in the same transaction that starts
    the run, so two beats never fire one tick twice and a long outage fires once, not N times.
    """

    __tablename__ = "workflow_schedules"

    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("workflows.workflow_id", ondelete="CASCADE"), primary_key=True
    )
    cron: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64))
    next_fire_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(Base):
    """An email or SMS stored instead of sent: no credentials were configured (the `outbox`
    backend, like Django's console email backend). Listed at GET /api/outbox."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_run", "run_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: The node's idempotency key: one message per node of a run, however often it runs.
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    channel: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    workflow_id: Mapped[str] = mapped_column(String(128))
    node_id: Mapped[str] = mapped_column(String(128))
    #: What would have been sent: from, to, cc, subject, body, ... (email) or from, to, body.
    message: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StoredCredential(Base):
    """A secret a driver uses (an SMTP URL, a Twilio token, an API key), owned by one workflow
    or one agent and deleted with it. Only its Fernet token is stored (app/credentials)."""

    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint("workflow_id", "name"),
        UniqueConstraint("agent_id", "name"),
        CheckConstraint("(workflow_id IS NULL) <> (agent_id IS NULL)", name="one_owner"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str | None] = mapped_column(
        ForeignKey("workflows.workflow_id", ondelete="CASCADE"), nullable=True
    )
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agent_mcps.agent_id", ondelete="CASCADE"), nullable=True
    )
    name: Mapped[str] = mapped_column(String(128))
    #: Fernet token of the JSON-encoded value; never returned by the API.
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookRefusal(Base):
    """A webhook delivery refused after its workflow was read: the refused half of the delivery
    log (GET /api/workflows/<id>/deliveries); the accepted half is `trigger_events`. Written in
    a statement of its own after the answer is decided, sampled under a flood, and pruned after
    DUALMCP_DELIVERY_LOG_DAYS (app/workflows/deliveries.py)."""

    __tablename__ = "webhook_refusals"
    __table_args__ = (
        Index("ix_webhook_refusals_workflow_received", "workflow_id", "received_at", "id"),
        Index("ix_webhook_refusals_received", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workflow_id: Mapped[str] = mapped_column(
        ForeignKey("workflows.workflow_id", ondelete="CASCADE")
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The trigger's signature scheme when the workflow takes webhooks (standard, github, ...).
    scheme: Mapped[str | None] = mapped_column(String(16), nullable=True)
    #: The delivery's idempotency key as its sender gave it (unverified when the signature was
    #: refused); never a secret, a signature or a token.
    delivery_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: The HTTP status answered (401, 403, 409, 415, 422, ...).
    status: Mapped[int] = mapped_column(Integer)
    #: missing, malformed, mismatch, stale, future, not_enabled, paused, invalid_body, ...
    reason: Mapped[str] = mapped_column(String(64))
    #: The sender's address as the front end saw it (request.remote_addr).
    source_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
