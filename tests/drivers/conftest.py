"""Driver fixtures: a NodeContext on the real SSRF-guarded client, allowed to reach loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.agents import LLMConfig, create_agent
from app.agents.cache import LocalCache
from app.agents.service import AgentService
from app.config import Settings
from app.credentials import CredentialVault
from app.drivers.base import NodeContext
from app.llm import LLMProviders
from app.messaging.ledger import EffectLedger
from app.models import Base, Workflow, make_engine, make_session_factory
from app.safe_http import make_http_client

MakeContext = Callable[..., NodeContext]


#: The Fernet key drivers' tests store credentials with.
ENCRYPTION_KEY = "xR8t0j1cQ3cV6vG0y2W9kq4mJ7sLpN1bZ5aD8fH3eUo="


@pytest.fixture
def settings() -> Settings:
    return Settings(http_allowlist="127.0.0.1", encryption_key=ENCRYPTION_KEY)


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with make_http_client(settings) as client:
        yield client


#: An agent on the offline echo provider, for tests about something else than the LLM.
ECHO_AGENT_ID = "contract-agent"
#: The workflow of make_ctx's nodes (stored, so that credentials can be stored for it).
WORKFLOW_ID = "wf-1"


@pytest.fixture
def agent_sessions(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A SQLite database holding ECHO_AGENT_ID."""
    engine = make_engine(f"sqlite:///{tmp_path / 'agents.db'}")
    Base.metadata.create_all(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        create_agent(
            session,
            agent_id=ECHO_AGENT_ID,
            agent_name="Contract",
            llm_config=LLMConfig(provider="echo"),
        )
        session.add(Workflow(workflow_id=WORKFLOW_ID, workflow_json={}))
    yield sessions
    engine.dispose()


@pytest.fixture
def agents(
    settings: Settings, http: httpx.Client, agent_sessions: sessionmaker[Session]
) -> Iterator[AgentService]:
    """The agent service on SQLite and an in-process cache."""
    service = AgentService(settings, agent_sessions, LocalCache(), LLMProviders(settings, http))
    yield service
    service.close()


@pytest.fixture
def make_ctx(
    settings: Settings,
    http: httpx.Client,
    agents: AgentService,
    agent_sessions: sessionmaker[Session],
) -> MakeContext:
    """Build a NodeContext; keyword arguments override the defaults (run_id, node_id, ...).
    Its sent_effects ledger, outbox and credentials live in the SQLite database of
    `agent_sessions` (credentials of workflow WORKFLOW_ID: tests/drivers/test_credentials.py)."""

    def make(**overrides: Any) -> NodeContext:
        fields: dict[str, Any] = {
            "run_id": "run-1",
            "node_id": "node-1",
            "workflow_id": WORKFLOW_ID,
            "attempt": 1,
            "timeout_s": 5.0,
            "settings": settings,
            "http": http,
            "agents": agents,
            "effects": EffectLedger(agent_sessions),
            "credentials": CredentialVault(agent_sessions, overrides.get("settings", settings)),
        }
        return NodeContext(**{**fields, **overrides})

    return make
