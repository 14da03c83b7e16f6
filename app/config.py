"""Settings from environment variables: one object, read once per process.

Prefixed ones are `DUALMCP_*`; the names of outside services keep their usual names
(DATABASE_URL, REDIS_URL, SMTP_URL, ...). Each field's `description` (and, where the default
alone would mislead, its `docs_default`) is the one text about it: app/settings_reference.py
renders docs/configuration.md's table and `.env.example` from this class (issue 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


def _docs_default(text: str) -> JsonDict:
    """What the docs' default column says instead of the bare value: what an empty default
    means, or a note after the value (which it must begin with, so a changed default shows)."""
    return {"docs_default": text}


@dataclass(frozen=True)
class Section:
    """A group of settings, as docs/configuration.md and `.env.example` show them."""

    title: str
    note: str
    fields: tuple[str, ...]


#: The groups, in order; each field of `Settings` is in exactly one (tests check it).
SECTIONS: tuple[Section, ...] = (
    Section(
        "services",
        "docker-compose.yml sets these; set them yourself anywhere else.",
        ("database_url", "redis_url", "celery_broker_url", "celery_result_backend", "cache_url"),
    ),
    Section(
        "access",
        "Who may call the API, and what the nodes' HTTP calls may reach.",
        (
            "api_keys",
            "encryption_key",
            "max_body_bytes",
            "public_base_url",
            "http_allowlist",
            "http_max_response_bytes",
        ),
    ),
    Section(
        "execution",
        "How nodes are queued, leased, timed out and handed back.",
        (
            "visibility_timeout",
            "max_queue_depth",
            "default_node_timeout_s",
            "lease_grace_s",
            "sweep_interval_s",
            "pending_republish_s",
            "max_redeliveries",
            "schedule_interval_s",
            "soft_shutdown_timeout_s",
            "slow_node_types",
            "db_pool_size",
            "db_max_overflow",
        ),
    ),
    Section(
        "run events",
        "The stream of `GET /api/runs/<id>/events` (docs/api.md: Watching a run).",
        ("run_events_max_streams", "run_events_max_s"),
    ),
    Section(
        "operations",
        "Logs and metrics (docs/operations.md).",
        (
            "log_format",
            "log_level",
            "metrics_token",
            "metrics_max_workflows",
            "worker_metrics_port",
            "worker_metrics_addr",
            "heartbeat_dir",
            "heartbeat_max_age_s",
            "otel_exporter_otlp_endpoint",
        ),
    ),
    Section(
        "agents and LLM providers",
        "Provider keys are never printed or logged.",
        (
            "openai_api_key",
            "openai_base_url",
            "anthropic_api_key",
            "anthropic_base_url",
            "llm_timeout_s",
            "llm_max_retries",
            "agent_memory_turns",
            "agent_memory_ttl_s",
            "agent_config_ttl_s",
            "agent_reply_wait_s",
            "agent_max_tool_calls",
            "agent_tool_timeout_s",
            "agent_turn_deadline_s",
            "agent_tool_result_max_chars",
        ),
    ),
    Section(
        "the MCP endpoint",
        "Serving workflows and agents as tools at `/mcp` (docs/api.md: The MCP endpoint).",
        ("mcp_wait_s", "mcp_allowed_origins"),
    ),
    Section(
        "webhooks",
        "The webhook door (docs/api.md: Webhook triggers).",
        (
            "delivery_log_days",
            "webhook_refusals_per_address",
            "webhook_refusals_per_workflow",
            "webhook_refusal_window_s",
            "proxy_hops",
        ),
    ),
    Section(
        "email and SMS",
        "With neither `SMTP_URL` nor `TWILIO_*` set, email and SMS nodes store their messages "
        "in the outbox (`GET /api/outbox`) instead of sending them. Secrets are never printed "
        "or logged.",
        (
            "smtp_url",
            "smtp_from",
            "twilio_account_sid",
            "twilio_auth_token",
            "twilio_from_number",
            "twilio_api_base",
        ),
    ),
)


class Settings(BaseSettings):
    """What a web process, a worker and beat need to know about their surroundings."""

    # A `.env` in the working directory fills what the environment does not set (compose's
    # file works for `make run` and for the roles run by hand); the environment wins.
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, env_file=".env", env_file_encoding="utf-8"
    )

    # --- services ---
    database_url: str = Field(
        "sqlite:///dualmcp.db",
        validation_alias=_env("DATABASE_URL"),
        description="PostgreSQL (`postgresql+psycopg://user:pass@host/db`) in production; "
        "`sqlite:///...` in standalone mode",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=_env("REDIS_URL"),
        description="Redis: the Celery broker and the agent cache",
    )
    celery_broker_url: str | None = Field(
        None,
        validation_alias=_env("CELERY_BROKER_URL"),
        description="overrides the broker alone (`memory://` in standalone mode)",
        json_schema_extra=_docs_default("(REDIS_URL)"),
    )
    celery_result_backend: str | None = Field(
        None,
        validation_alias=_env("CELERY_RESULT_BACKEND"),
        description="where the agent task's replies wait for the front end (Celery's result "
        "backend; `cache+memory://` in standalone). Node tasks store no results: PostgreSQL "
        "has them",
        json_schema_extra=_docs_default("(REDIS_URL)"),
    )
    cache_url: str | None = Field(
        None,
        validation_alias=_env("DUALMCP_CACHE_URL"),
        description="the cache of agent configs and memory; `memory://` keeps it in-process "
        "(standalone without Redis)",
        json_schema_extra=_docs_default("(REDIS_URL)"),
    )

    # --- access ---
    api_keys: str = Field(
        "",
        validation_alias=_env("DUALMCP_API_KEYS"),
        description="`scope:key` pairs, comma-separated; scope `admin`, `invoke` or `read`. "
        "`dualmcp keys create` stores more in the database",
    )
    encryption_key: SecretStr | None = Field(
        None,
        validation_alias=_env("DUALMCP_ENCRYPTION_KEY"),
        description="Fernet keys for stored credentials, comma-separated: the first encrypts, "
        "every one decrypts (rotation: `dualmcp keys rotate-encryption`). Web, workers and beat "
        "refuse to start without one; `dualmcp keys new-encryption-key` makes one",
        json_schema_extra=_docs_default("(required; standalone: `./dualmcp.key`)"),
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        validation_alias=_env("DUALMCP_MAX_BODY_BYTES"),
        description="largest request body the front end reads, in bytes (413 past it)",
    )
    public_base_url: str | None = Field(
        None,
        validation_alias=_env("DUALMCP_PUBLIC_BASE_URL"),
        description="the URL senders reach the web at (`https://dualmcp.example.com`, with any "
        "path prefix): Twilio signs the URL it posted to, which behind a proxy is not the "
        "request's own",
        json_schema_extra=_docs_default("(the request's URL)"),
    )
    http_allowlist: str = Field(
        "",
        validation_alias=_env("DUALMCP_HTTP_ALLOWLIST"),
        description="hosts or CIDRs, comma-separated, that HTTP-calling nodes may reach although "
        "private or loopback",
    )
    http_max_response_bytes: int = Field(
        10 * 1024 * 1024,
        validation_alias=_env("DUALMCP_HTTP_MAX_RESPONSE_BYTES"),
        description="largest response body an HTTP-calling node reads, in bytes",
    )

    # --- execution ---
    visibility_timeout: int = Field(
        3600,
        validation_alias=_env("DUALMCP_VISIBILITY_TIMEOUT"),
        description="seconds before the Redis broker hands an unacknowledged message to another "
        "worker; keep it above the longest node timeout. A killed worker's messages run again "
        "within about this plus a tenth of it (at most 10 s more)",
    )
    max_queue_depth: int = Field(
        200,
        validation_alias=_env("DUALMCP_MAX_QUEUE_DEPTH"),
        description="admission control: past this many queued node messages, new runs get 503 "
        "+ `Retry-After`; size it as sustained runs/s x the queueing delay you accept (the "
        "default: about 2 s on one 2-core worker)",
    )
    default_node_timeout_s: float = Field(
        300.0,
        validation_alias=_env("DUALMCP_NODE_TIMEOUT_S"),
        description="timeout of a node that names none, in seconds",
    )
    lease_grace_s: float = Field(
        30.0,
        validation_alias=_env("DUALMCP_LEASE_GRACE_S"),
        description="a lease lasts the node's timeout plus this grace, in seconds",
    )
    sweep_interval_s: float = Field(
        5.0,
        validation_alias=_env("DUALMCP_SWEEP_INTERVAL_S"),
        description="how often beat runs the sweeper, in seconds",
    )
    pending_republish_s: float = Field(
        120.0,
        validation_alias=_env("DUALMCP_PENDING_REPUBLISH_S"),
        description="a pending node not picked up within this many seconds is published again: "
        "the backstop for a message lost in the broker. Long, because under a backlog a queued "
        "message is merely late and republishing it would double the backlog; a failed publish "
        "is marked and republished on the next sweep instead",
    )
    max_redeliveries: int = Field(
        3,
        validation_alias=_env("DUALMCP_MAX_REDELIVERIES"),
        description="how many times a node may lose its worker before the run fails (celery#9082)",
    )
    schedule_interval_s: float = Field(
        10.0,
        gt=0,
        validation_alias=_env("DUALMCP_SCHEDULE_INTERVAL_S"),
        description="how often beat looks for due `schedule` triggers, in seconds",
    )
    soft_shutdown_timeout_s: float = Field(
        60.0,
        ge=0,
        validation_alias=_env("DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S"),
        description="after SIGTERM, seconds a worker lets its running nodes finish before "
        "handing them back (Celery's `worker_soft_shutdown_timeout`); keep the stop grace "
        "period above it",
    )
    slow_node_types: str = Field(
        "openai,ai_content_generation,claude_ai,mcp_llm,http_request,data_fetch,webhook",
        validation_alias=_env("DUALMCP_SLOW_NODE_TYPES"),
        description="node types, comma-separated, that wait on the network: their messages go "
        "to the `dualmcp.slow` queue, served by a threads-pool worker (docs/operations.md: "
        "Workers), so fast nodes never queue behind them. Empty: every node on the fast queues",
    )
    db_pool_size: int = Field(
        5,
        ge=1,
        validation_alias=_env("DUALMCP_DB_POOL_SIZE"),
        description="PostgreSQL connections each worker process keeps open in its pool (lease "
        "claims have a pool of 2 of their own). No connection is held while a driver runs, so a "
        "`-c 100` threads worker needs about 10, not 100 (docs/operations.md: Workers)",
    )
    db_max_overflow: int = Field(
        10,
        ge=0,
        validation_alias=_env("DUALMCP_DB_MAX_OVERFLOW"),
        description="connections a worker process may open above each pool at a peak, closed "
        "again when returned: at most pool size + 2 + 2 x this in all",
    )

    # --- run events ---
    run_events_max_streams: int = Field(
        2,
        ge=0,
        validation_alias=_env("DUALMCP_RUN_EVENTS_MAX_STREAMS"),
        description="streams of `GET /api/runs/<id>/events` one web process serves at once; past "
        "it 503 + `Retry-After`. Each holds a gunicorn thread: keep it below `--threads` "
        "(compose: 4). 0 turns streams off (clients poll `GET /api/runs/<id>` with "
        "`If-None-Match`)",
    )
    run_events_max_s: float = Field(
        300.0,
        gt=0,
        validation_alias=_env("DUALMCP_RUN_EVENTS_MAX_S"),
        description="seconds one stream lasts at most; then it closes and the client reconnects",
    )

    # --- operations ---
    log_format: Literal["json", "text"] = Field(
        "text",
        validation_alias=_env("DUALMCP_LOG_FORMAT"),
        description="`json`: one JSON object per line with `request_id`, `run_id`, `node_id`, "
        "`workflow_id` "
        "(for log shippers; the image and compose set it); `text` for people. Secrets are "
        "masked in both",
        json_schema_extra=_docs_default("`text` (`json` in the image and in compose)"),
    )
    log_level: str = Field(
        "INFO",
        validation_alias=_env("DUALMCP_LOG_LEVEL"),
        description="the root log level of web, worker and beat (a worker's `--loglevel` wins)",
    )
    metrics_token: SecretStr | None = Field(
        None,
        validation_alias=_env("DUALMCP_METRICS_TOKEN"),
        description="when set (not empty), the web's `GET /metrics` answers only "
        "`Authorization: Bearer <token>`, 401 otherwise; Prometheus sends it from its scrape "
        "config (docs/operations.md). The workers' metrics port is not affected",
    )
    metrics_max_workflows: int = Field(
        50,
        ge=0,
        validation_alias=_env("DUALMCP_METRICS_MAX_WORKFLOWS"),
        description="distinct `workflow` label values one process gives run metrics; runs of "
        "the workflows past it are counted as `other` (bounds the series Prometheus keeps)",
    )
    worker_metrics_port: int = Field(
        0,
        ge=0,
        validation_alias=_env("DUALMCP_WORKER_METRICS_PORT"),
        description="port on which a worker serves Prometheus `/metrics` (0: off; compose sets "
        "9808); its prefork children's metrics are included when `PROMETHEUS_MULTIPROC_DIR` is "
        "set",
        json_schema_extra=_docs_default("0 (off; 9808 in compose)"),
    )
    worker_metrics_addr: str = Field(
        "0.0.0.0",
        validation_alias=_env("DUALMCP_WORKER_METRICS_ADDR"),
        description="the address the worker's metrics port listens on",
    )
    heartbeat_dir: str = Field(
        "/tmp",
        validation_alias=_env("DUALMCP_HEARTBEAT_DIR"),
        description="where a worker and beat keep the heartbeat file their own loop touches "
        "(`dualmcp-worker.heartbeat`, `dualmcp-beat.heartbeat`), read by `dualmcp healthcheck`; "
        "one worker and one beat per directory",
    )
    heartbeat_max_age_s: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("DUALMCP_HEARTBEAT_MAX_AGE_S"),
        description="the healthcheck of a worker or beat (`dualmcp healthcheck`) fails once its "
        "heartbeat file is older than this, in seconds (the loops touch it every quarter of it, "
        "also while Redis is down)",
    )
    otel_exporter_otlp_endpoint: str = Field(
        "",
        validation_alias=_env("OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="where to send OpenTelemetry traces (OTLP over HTTP, e.g. "
        "`http://collector:4318`); needs `pip install 'dualmcp[otel]'`. The other `OTEL_*` "
        "variables of the OpenTelemetry SDK apply too (docs/operations.md: Request ids and traces)",
        json_schema_extra=_docs_default("(empty: no tracing, nothing of OpenTelemetry loaded)"),
    )

    # --- agents and LLM providers ---
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("OPENAI_API_KEY"),
        description="the `openai` provider's key (an agent whose `llm_config` names a "
        "`base_url` may do without one)",
    )
    openai_base_url: str | None = Field(
        None,
        validation_alias=_env("OPENAI_BASE_URL"),
        description="any OpenAI-compatible server, for every agent without a `base_url` (set by "
        "ops, so not SSRF-checked)",
        json_schema_extra=_docs_default("(api.openai.com)"),
    )
    anthropic_api_key: SecretStr | None = Field(
        None,
        validation_alias=_env("ANTHROPIC_API_KEY"),
        description="the `anthropic` provider's key",
    )
    anthropic_base_url: str | None = Field(
        None,
        validation_alias=_env("ANTHROPIC_BASE_URL"),
        description="an Anthropic-compatible server (set by ops, so not SSRF-checked)",
        json_schema_extra=_docs_default("(api.anthropic.com)"),
    )
    llm_timeout_s: float = Field(
        60.0,
        gt=0,
        validation_alias=_env("DUALMCP_LLM_TIMEOUT_S"),
        description="seconds one LLM request may take (each attempt)",
    )
    llm_max_retries: int = Field(
        3,
        ge=0,
        validation_alias=_env("DUALMCP_LLM_MAX_RETRIES"),
        description="retries of a 429, 5xx, timeout or connection error, with exponential "
        "backoff (the SDKs')",
    )
    agent_memory_turns: int = Field(
        10,
        ge=1,
        validation_alias=_env("DUALMCP_AGENT_MEMORY_TURNS"),
        description="whole turns (a message and its reply) an agent remembers verbatim per "
        "session; older turns are folded into the session's rolling summary",
    )
    agent_memory_ttl_s: int = Field(
        86_400,
        ge=1,
        validation_alias=_env("DUALMCP_AGENT_MEMORY_TTL_S"),
        description="seconds a session's memory stays cached in Redis after its last use "
        "(PostgreSQL keeps it)",
    )
    agent_config_ttl_s: int = Field(
        300,
        ge=1,
        validation_alias=_env("DUALMCP_AGENT_CONFIG_TTL_S"),
        description="seconds an agent's config stays cached (updates and deletes drop it at once)",
    )
    agent_reply_wait_s: float = Field(
        30.0,
        ge=0,
        validation_alias=_env("DUALMCP_AGENT_REPLY_WAIT_S"),
        description="seconds `POST /api/mcp/process` waits for the worker's reply before "
        "answering 202 with a status URL",
    )
    agent_max_tool_calls: int = Field(
        8,
        ge=0,
        validation_alias=_env("DUALMCP_AGENT_MAX_TOOL_CALLS"),
        description="tool calls one agent turn may make; past it the turn ends with "
        '`"stopped": "max_tool_calls"`',
    )
    agent_tool_timeout_s: float = Field(
        30.0,
        gt=0,
        validation_alias=_env("DUALMCP_AGENT_TOOL_TIMEOUT_S"),
        description="seconds one tool call (a workflow's run, a remote MCP tool) may take; the "
        "model hears of a timeout as an error result",
    )
    agent_turn_deadline_s: float = Field(
        120.0,
        gt=0,
        validation_alias=_env("DUALMCP_AGENT_TURN_DEADLINE_S"),
        description="seconds a whole turn with tools may take; past it the turn ends with "
        '`"stopped": "deadline"`',
    )
    agent_tool_result_max_chars: int = Field(
        16_000,
        ge=100,
        validation_alias=_env("DUALMCP_AGENT_TOOL_RESULT_MAX_CHARS"),
        description="longest tool result kept in memory and given back to the model, in characters",
    )

    # --- the MCP endpoint ---
    mcp_wait_s: float = Field(
        20.0,
        ge=0,
        validation_alias=_env("DUALMCP_MCP_WAIT_S"),
        description="seconds a tool call at `/mcp` waits for its run (or an agent's reply); one "
        "still running is answered with its `run_id`, for the `get_run` tool. Keep it below MCP "
        "clients' timeouts (often 60 seconds)",
    )
    mcp_allowed_origins: str = Field(
        "",
        validation_alias=_env("DUALMCP_MCP_ALLOWED_ORIGINS"),
        description="origins (`https://app.example.com`), comma-separated, whose browser pages "
        "may call `/mcp`; a request with any other `Origin` header gets 403 (clients that are "
        "not browsers send none)",
    )

    # --- webhooks ---
    delivery_log_days: float = Field(
        7.0,
        gt=0,
        validation_alias=_env("DUALMCP_DELIVERY_LOG_DAYS"),
        description="days `GET /api/workflows/<id>/deliveries` shows; older refused deliveries "
        "are deleted (accepted ones are `trigger_events` rows, kept for idempotency)",
    )
    webhook_refusals_per_address: int = Field(
        20,
        ge=0,
        validation_alias=_env("DUALMCP_WEBHOOK_REFUSALS_PER_ADDRESS"),
        description="refused webhook deliveries (signature not holding) one source address may "
        "cause per window before its webhook requests get 429 + `Retry-After` without a "
        "signature check; 0: no limit",
    )
    webhook_refusals_per_workflow: int = Field(
        100,
        ge=0,
        validation_alias=_env("DUALMCP_WEBHOOK_REFUSALS_PER_WORKFLOW"),
        description="the same per workflow, whatever the address; 0: no limit",
    )
    webhook_refusal_window_s: int = Field(
        60,
        ge=1,
        validation_alias=_env("DUALMCP_WEBHOOK_REFUSAL_WINDOW_S"),
        description="the window of those two limits, in seconds (fixed windows, counted in the "
        "broker's Redis; in the process with an in-memory broker)",
    )
    proxy_hops: int = Field(
        0,
        ge=0,
        validation_alias=_env("DUALMCP_PROXY_HOPS"),
        description="reverse proxies in front of the web whose `X-Forwarded-For` is trusted for "
        "the sender's address (werkzeug's ProxyFix); 0 takes the peer's address. Behind one "
        "proxy or an ingress, 1: otherwise every sender shares the proxy's address and its "
        "refusal limit",
    )

    # --- email and SMS ---
    smtp_url: SecretStr | None = Field(
        None,
        validation_alias=_env("SMTP_URL"),
        description="`smtp://user:pass@host:port` (STARTTLS when the server offers it) or "
        "`smtps://...` (TLS)",
        json_schema_extra=_docs_default("(empty: the outbox)"),
    )
    smtp_from: str | None = Field(
        None,
        validation_alias=_env("SMTP_FROM"),
        description="the sender of every email (From), e.g. `Sales <sales@example.com>`",
        json_schema_extra=_docs_default("(the SMTP user when it is an address)"),
    )
    twilio_account_sid: str | None = Field(
        None,
        validation_alias=_env("TWILIO_ACCOUNT_SID"),
        description="the Twilio account of `twilio_sms` nodes",
        json_schema_extra=_docs_default("(empty: the outbox)"),
    )
    twilio_auth_token: SecretStr | None = Field(
        None,
        validation_alias=_env("TWILIO_AUTH_TOKEN"),
        description="its auth token",
        json_schema_extra=_docs_default("(empty: the outbox)"),
    )
    twilio_from_number: str | None = Field(
        None,
        validation_alias=_env("TWILIO_FROM_NUMBER"),
        description="the sender of SMS messages (E.164) when a node names none",
    )
    twilio_api_base: str | None = Field(
        None,
        validation_alias=_env("TWILIO_API_BASE"),
        description="a Twilio-compatible server (set by ops, so trusted; a local one in tests)",
        json_schema_extra=_docs_default("(https://api.twilio.com)"),
    )

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

    @property
    def slow_node_type_set(self) -> frozenset[str]:
        """DUALMCP_SLOW_NODE_TYPES as a set."""
        return frozenset(name.strip() for name in self.slow_node_types.split(",") if name.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The environment's settings, read once: for the entry points whose only configuration is
    the environment (`gunicorn 'app.web:create_app()'`, `celery -A app.tasks`, the CLI). Code
    below them takes a `Settings` argument; standalone mode and tests build their own."""
    return Settings()
