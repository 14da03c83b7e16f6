"""Settings from environment variables: one object, read once per process.

Every variable is listed in docs/configuration.md. Prefixed ones are `DUALMCP_*`; the names
of outside services keep their usual names (DATABASE_URL, REDIS_URL, SMTP_URL, ...).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
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
    #: Admission control: queued node messages past which new runs are refused (front end);
    #: about sustained runs/s x the queueing delay you accept.
    max_queue_depth: int = Field(200, validation_alias=_env("DUALMCP_MAX_QUEUE_DEPTH"))
    #: Node timeout when a node names none, in seconds.
    default_node_timeout_s: float = Field(300.0, validation_alias=_env("DUALMCP_NODE_TIMEOUT_S"))
    #: A lease lasts the node's timeout plus this grace, in seconds.
    lease_grace_s: float = Field(30.0, validation_alias=_env("DUALMCP_LEASE_GRACE_S"))
    #: How often beat runs the sweeper, in seconds.
    sweep_interval_s: float = Field(5.0, validation_alias=_env("DUALMCP_SWEEP_INTERVAL_S"))
    #: A pending node not picked up within this many seconds is published again: the backstop
    #: for a message lost in the broker. Long, because under a backlog a queued message is merely
    #: late, and republishing it would duplicate the backlog; a failed publish is marked
    #: (published_at NULL) and republished on the next sweep instead.
    pending_republish_s: float = Field(120.0, validation_alias=_env("DUALMCP_PENDING_REPUBLISH_S"))
    #: How many times a node may lose its worker before the run fails (celery#9082).
    max_redeliveries: int = Field(3, validation_alias=_env("DUALMCP_MAX_REDELIVERIES"))

    # Operations (docs/operations.md).
    #: `json` (one object per line, for log shippers) or `text` (for people).
    log_format: Literal["json", "text"] = Field("text", validation_alias=_env("DUALMCP_LOG_FORMAT"))
    #: The root log level of web, worker and beat (a worker's --loglevel wins).
    log_level: str = Field("INFO", validation_alias=_env("DUALMCP_LOG_LEVEL"))
    #: How often beat looks for due `schedule` triggers, in seconds.
    schedule_interval_s: float = Field(
        10.0, gt=0, validation_alias=_env("DUALMCP_SCHEDULE_INTERVAL_S")
    )
    #: Seconds a SIGTERMed worker lets its running nodes finish before handing them back
    #: (Celery's worker_soft_shutdown_timeout); keep the stop grace period above it.
    soft_shutdown_timeout_s: float = Field(
        60.0, ge=0, validation_alias=_env("DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S")
    )
    #: Port on which a worker serves /metrics (0: off); its prefork children's metrics are
    #: included when PROMETHEUS_MULTIPROC_DIR is set.
    worker_metrics_port: int = Field(0, ge=0, validation_alias=_env("DUALMCP_WORKER_METRICS_PORT"))
    #: Address the worker's metrics port listens on.
    worker_metrics_addr: str = Field(
        "0.0.0.0", validation_alias=_env("DUALMCP_WORKER_METRICS_ADDR")
    )

    # Agents and LLM providers (DESIGN.md: Agents). Keys are SecretStr: never printed or logged.
    #: The OpenAI key; an agent whose llm_config names a base_url may do without one.
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    #: Any OpenAI-compatible server (set by ops, so not SSRF-checked); empty means api.openai.com.
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    anthropic_api_key: SecretStr | None = Field(None, validation_alias=_env("ANTHROPIC_API_KEY"))
    anthropic_base_url: str | None = Field(None, validation_alias=_env("ANTHROPIC_BASE_URL"))
    #: Seconds one LLM request may take (each attempt).
    llm_timeout_s: float = Field(60.0, gt=0, validation_alias=_env("DUALMCP_LLM_TIMEOUT_S"))
    #: Retries of a 429, 5xx, timeout or connection error, with exponential backoff (the SDKs').
    llm_max_retries: int = Field(3, ge=0, validation_alias=_env("DUALMCP_LLM_MAX_RETRIES"))
    #: The cache of agent configs and memory: empty means REDIS_URL; `memory://` is in-process
    #: (standalone mode without Redis).
    cache_url: str | None = Field(None, validation_alias=_env("DUALMCP_CACHE_URL"))
    #: Whole turns (a message and its reply) an agent remembers verbatim per session; older
    #: turns are folded into the session's rolling summary.
    agent_memory_turns: int = Field(10, ge=1, validation_alias=_env("DUALMCP_AGENT_MEMORY_TURNS"))
    #: Seconds a session's cached memory lives in Redis after its last use (PostgreSQL keeps it).
    agent_memory_ttl_s: int = Field(
        86_400, ge=1, validation_alias=_env("DUALMCP_AGENT_MEMORY_TTL_S")
    )
    #: Seconds an agent's config stays cached (updates and deletes invalidate it at once).
    agent_config_ttl_s: int = Field(300, ge=1, validation_alias=_env("DUALMCP_AGENT_CONFIG_TTL_S"))
    #: Seconds POST /api/mcp/process waits for the worker before answering 202 with a status URL.
    agent_reply_wait_s: float = Field(
        30.0, ge=0, validation_alias=_env("DUALMCP_AGENT_REPLY_WAIT_S")
    )
    #: Tool calls one agent turn may make before it is stopped with `"stopped": "max_tool_calls"`.
    agent_max_tool_calls: int = Field(
        8, ge=0, validation_alias=_env("DUALMCP_AGENT_MAX_TOOL_CALLS")
    )
    #: Seconds one tool call may take (a workflow's run, a remote MCP tool) before the model is
    #: told it timed out.
    agent_tool_timeout_s: float = Field(
        30.0, gt=0, validation_alias=_env("DUALMCP_AGENT_TOOL_TIMEOUT_S")
    )
    #: Seconds a whole turn with tools may take; past it the turn ends `"stopped": "deadline"`.
    agent_turn_deadline_s: float = Field(
        120.0, gt=0, validation_alias=_env("DUALMCP_AGENT_TURN_DEADLINE_S")
    )
    #: Longest tool result kept in memory and given back to the model, in characters.
    agent_tool_result_max_chars: int = Field(
        16_000, ge=100, validation_alias=_env("DUALMCP_AGENT_TOOL_RESULT_MAX_CHARS")
    )
    #: Where the agent task's replies wait for the front end (Celery result backend; REDIS_URL
    #: when empty). Node tasks store no results: PostgreSQL has them.
    celery_result_backend: str | None = Field(None, validation_alias=_env("CELERY_RESULT_BACKEND"))

    # Serving tools over MCP (docs/api.md: The MCP endpoint).
    #: Seconds a tool call at /mcp waits for its run or agent reply; one still running then is
    #: answered with its run id, for `get_run`. Keep it under MCP clients' timeouts (often 60 s).
    mcp_wait_s: float = Field(20.0, ge=0, validation_alias=_env("DUALMCP_MCP_WAIT_S"))
    #: Comma-separated origins (`https://app.example.com`) whose browser pages may call /mcp; a
    #: request with any other Origin header is refused (403). Non-browser clients send none.
    mcp_allowed_origins: str = Field("", validation_alias=_env("DUALMCP_MCP_ALLOWED_ORIGINS"))

    # The webhook door (docs/api.md: Webhook triggers; issue 13, section 4).
    #: Days the delivery log (GET /api/workflows/<id>/deliveries) shows; older refusals are
    #: deleted. Accepted deliveries are trigger_events rows, kept for idempotency regardless.
    delivery_log_days: float = Field(7.0, gt=0, validation_alias=_env("DUALMCP_DELIVERY_LOG_DAYS"))
    #: Refused webhook deliveries one source address may cause per window before its requests
    #: are answered 429 without a signature check (0: no limit).
    webhook_refusals_per_address: int = Field(
        20, ge=0, validation_alias=_env("DUALMCP_WEBHOOK_REFUSALS_PER_ADDRESS")
    )
    #: The same per workflow, whatever the address (0: no limit).
    webhook_refusals_per_workflow: int = Field(
        100, ge=0, validation_alias=_env("DUALMCP_WEBHOOK_REFUSALS_PER_WORKFLOW")
    )
    #: The window of those two limits, in seconds (fixed windows, counted in Redis).
    webhook_refusal_window_s: int = Field(
        60, ge=1, validation_alias=_env("DUALMCP_WEBHOOK_REFUSAL_WINDOW_S")
    )
    #: Reverse proxies in front of the web whose X-Forwarded-For is trusted (werkzeug's
    #: ProxyFix); 0 takes the peer's address. Behind one proxy, 1: otherwise every sender
    #: shares the proxy's address and its refusal limit.
    proxy_hops: int = Field(0, ge=0, validation_alias=_env("DUALMCP_PROXY_HOPS"))
    #: The URL senders reach the web at (`https://dualmcp.example.com`, with any path prefix):
    #: Twilio signs the URL it posted to, which behind a proxy is not the request's own. Empty:
    #: the request's URL.
    public_base_url: str | None = Field(None, validation_alias=_env("DUALMCP_PUBLIC_BASE_URL"))

    # Messaging and credentials (docs/workflows.md: Email, SMS and the outbox). Secrets are
    # SecretStr: never printed or logged. With neither SMTP_URL nor TWILIO_* set, email and SMS
    # nodes store their messages in the outbox (GET /api/outbox) instead of sending them.
    #: Fernet keys, comma-separated: the first encrypts, every one decrypts (rotation).
    encryption_key: SecretStr | None = Field(None, validation_alias=_env("DUALMCP_ENCRYPTION_KEY"))
    #: smtp://user:pass@host:port (STARTTLS when the server offers it) or smtps:// (TLS).
    smtp_url: SecretStr | None = Field(None, validation_alias=_env("SMTP_URL"))
    #: The sender of every email (From), e.g. `Sales <sales@example.com>`.
    smtp_from: str | None = Field(None, validation_alias=_env("SMTP_FROM"))
    twilio_account_sid: str | None = Field(None, validation_alias=_env("TWILIO_ACCOUNT_SID"))
    twilio_auth_token: SecretStr | None = Field(None, validation_alias=_env("TWILIO_AUTH_TOKEN"))
    #: The sender of SMS messages (E.164) when a node names none.
    twilio_from_number: str | None = Field(None, validation_alias=_env("TWILIO_FROM_NUMBER"))
    #: A Twilio-compatible server (set by ops, so trusted); empty means https://api.twilio.com.
    twilio_api_base: str | None = Field(None, validation_alias=_env("TWILIO_API_BASE"))

    @property
    def broker_url(self) -> str:
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend_url(self) -> str:
        return self.celery_result_backend or self.redis_url

    @property
    def memory_cache_url(self) -> str:
        return self.cache_url or self.redis_url

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The environment's settings, read once: for the entry points whose only configuration is
    the environment (`gunicorn 'app.web:create_app()'`, `celery -A app.tasks`, the CLI). Code
    below them takes a `Settings` argument; standalone mode and tests build their own."""
    return Settings()
