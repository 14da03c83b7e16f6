"""What the front end's views share: settings, the session factory, and how to publish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import redis
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from app import apikeys
from app.agents.replies import AgentTasks
from app.agents.service import AgentService, make_agent_service
from app.config import Settings
from app.workflows.runs import NodeRef


@dataclass
class WebContext:
    settings: Settings
    sessions: sessionmaker[Session]
    #: Sends node messages after commit (a Dispatcher's `publish`, or a stand-in in tests).
    publish: Callable[[list[NodeRef]], None]
    #: Reports how many messages wait in the queues (admission control); None means unknown.
    queue_depth: Callable[[], int | None] = field(default=lambda: None)
    #: Runs agent turns on a worker (app.tasks.agents.CeleryAgentTasks, or a stand-in in tests);
    #: None answers POST /api/mcp/process with 503.
    agent_tasks: AgentTasks | None = None
    #: The agent service (configs, memory); made from the settings when not given.
    agent_service: AgentService | None = None

    @cached_property
    def agents(self) -> AgentService:
        """The front end reads memory and drops cached configs; it never calls an LLM itself."""
        return self.agent_service or make_agent_service(self.settings, self.sessions, None)

    @cached_property
    def env_keys(self) -> list[tuple[apikeys.Scope, str]]:
        return apikeys.parse_env_keys(self.settings.api_keys)

    @cached_property
    def broker_redis(self) -> redis.Redis:
        """A client for the Redis broker, for readiness checks."""
        return redis.Redis.from_url(
            self.settings.broker_url, socket_connect_timeout=2, socket_timeout=2
        )


def web_context() -> WebContext:
    context: WebContext = current_app.extensions["dualmcp"]
    return context
