"""The agent service on the real PostgreSQL and Redis, and LLM servers on loopback.

Memory tests use Redis database 3, flushed before each test: the broker and the integration
stack live in database 0 and are never touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from app.agents.cache import RedisCache
from app.agents.service import AgentService
from app.config import Settings
from app.llm import LLMProviders
from app.models import make_engine, make_session_factory
from app.safe_http import make_http_client
from tests.http_peer import HttpPeer
from tests.llm_peers import serve_anthropic, serve_openai

CACHE_DB = 3

MakeService = Callable[..., AgentService]


@pytest.fixture
def cache_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A client on Redis database 3, empty at the start of the test."""
    parts = urlsplit(redis_url)
    client = redis.Redis.from_url(urlunsplit(parts._replace(path=f"/{CACHE_DB}")))
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_sessions(migrated_postgres: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(migrated_postgres)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def llm_peer() -> Iterator[HttpPeer]:
    """Speaks OpenAI's Chat Completions and Anthropic's Messages; records what it received."""
    with HttpPeer() as peer:
        serve_openai(peer)
        serve_anthropic(peer)
        yield peer


@pytest.fixture
def make_service(
    pg_sessions: sessionmaker[Session], cache_redis: redis.Redis
) -> Iterator[MakeService]:
    """An AgentService on PostgreSQL and Redis; settings overrides as keyword arguments."""
    made: list[tuple[AgentService, httpx.Client]] = []

    def make(**overrides: object) -> AgentService:
        fields: dict[str, object] = {
            "DUALMCP_HTTP_ALLOWLIST": "127.0.0.1",
            "DUALMCP_LLM_MAX_RETRIES": 1,
            "DUALMCP_LLM_TIMEOUT_S": 5,
        }
        settings = Settings(**{**fields, **overrides})
        http = make_http_client(settings)
        service = AgentService(
            settings, pg_sessions, RedisCache(cache_redis), LLMProviders(settings, http)
        )
        made.append((service, http))
        return service

    yield make
    for service, http in made:
        service.close()
        http.close()
