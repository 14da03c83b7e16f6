"""What the front end's views share: settings, the session factory, and how to publish."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import redis
from flask import current_app
from sqlalchemy.orm import Session, sessionmaker

from app import apikeys
from app.config import Settings
from app.workflows.runs import NodeRef


@dataclass
class WebContext:
    settings: Settings
    sessions: sessionmaker[Session]
    #: Sends node messages after commit (app.tasks.dispatch.publish, or a stand-in in tests).
    publish: Callable[[list[NodeRef]], None]
    #: Reports how many messages wait in the queues (admission control); None means unknown.
    queue_depth: Callable[[], int | None] = field(default=lambda: None)

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
