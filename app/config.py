"""Settings from environment variables: one object, read once per process.

Every variable is listed in README.md (Configuration). Prefixed ones are `DUALMCP_*`; the names
of outside services keep their usual names (DATABASE_URL, REDIS_URL, SMTP_URL, ...).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseSettings):
    """What a web process, a worker and beat need to know about their surroundings."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    #: PostgreSQL in production (postgresql+psycopg://...); sqlite:///... in standalone mode.
    database_url: str = Field("sqlite:///dualmcp.db", validation_alias=_env("DATABASE_URL"))
    #: Redis: the Celery broker and the agent-memory cache.
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    #: Comma-separated `scope:key` pairs (scope admin or read); `dualmcp keys create` stores more.
    api_keys: str = Field("", validation_alias=_env("DUALMCP_API_KEYS"))
    #: Largest request body the front end reads, in bytes (413 past it).
    max_body_bytes: int = Field(1024 * 1024, validation_alias=_env("DUALMCP_MAX_BODY_BYTES"))
    #: Overrides the broker alone (memory:// in standalone mode).
    celery_broker_url: str | None = Field(None, validation_alias=_env("CELERY_BROKER_URL"))
    #: Hosts or CIDRs that HTTP-calling nodes may reach although private or loopback.
    http_allowlist: str = Field("", validation_alias=_env("DUALMCP_HTTP_ALLOWLIST"))
    #: Largest response body an HTTP-calling node reads, in bytes.
    http_max_response_bytes: int = Field(
        10 * 1024 * 1024, validation_alias=_env("DUALMCP_HTTP_MAX_RESPONSE_BYTES")
    )
    #: Seconds before the Redis broker hands an unacknowledged message to another worker.
    visibility_timeout: int = Field(3600, validation_alias=_env("DUALMCP_VISIBILITY_TIMEOUT"))
    #: Admission control: queued node messages past which new runs are refused (front end).
    max_queue_depth: int = Field(10_000, validation_alias=_env("DUALMCP_MAX_QUEUE_DEPTH"))
    #: Node timeout when a node names none, in seconds.
    default_node_timeout_s: float = Field(300.0, validation_alias=_env("DUALMCP_NODE_TIMEOUT_S"))
    #: A lease lasts the node's timeout plus this grace, in seconds.
    lease_grace_s: float = Field(30.0, validation_alias=_env("DUALMCP_LEASE_GRACE_S"))
    #: How often beat runs the sweeper, in seconds.
    sweep_interval_s: float = Field(5.0, validation_alias=_env("DUALMCP_SWEEP_INTERVAL_S"))
    #: A pending node not picked up within this many seconds is published again.
    pending_republish_s: float = Field(10.0, validation_alias=_env("DUALMCP_PENDING_REPUBLISH_S"))
    #: How many times a node may lose its worker before the run fails (celery#9082).
    max_redeliveries: int = Field(3, validation_alias=_env("DUALMCP_MAX_REDELIVERIES"))

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests build their own `Settings(...)` and pass it in."""
    return Settings()
