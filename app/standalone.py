"""`dualmcp standalone`: the web front end and a worker in one process, with no services.

SQLite in the working directory and Celery's in-memory broker replace PostgreSQL and Redis
(credentials are encrypted with DUALMCP_ENCRYPTION_KEY, else a key kept in ./dualmcp.key);
agent memory and configs are cached in-process (or in Redis when REDIS_URL answers), and agent
replies wait in Celery's in-memory result backend. Everything else is the production code
path: the same Flask app, the same Celery tasks run by a real Celery WorkController (a thread
pool), and the same sweeper task published on a timer.

The environment is read, never written: its settings and standalone mode's own make one
`Settings`, which builds the Celery app, the worker's runtime and the Flask app (their factories
take it), as Flask's and Celery's app-factory patterns do.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from celery import Celery
from celery.worker import WorkController
from flask import Flask
from pydantic import SecretStr
from waitress import create_server

from app import apikeys
from app.config import Settings
from app.credentials.crypto import new_key
from app.demo import DemoServer, run_demo
from app.logs import configure_logging
from app.models.migrate import upgrade
from app.tasks.celery_app import (
    FIRE_SCHEDULES,
    NODES_QUEUE,
    QUEUES_IN_ORDER,
    SWEEP,
    make_celery,
    use_celery,
)
from app.tasks.runtime import Runtime, make_runtime, set_runtime
from app.web import create_app, default_context

log = logging.getLogger(__name__)

#: Threads of the in-process worker: nodes that wait on the network (LLM, HTTP) hold one each
#: while SQLite serialises the writes anyway; each still has its timeout (app/workflows/
#: deadlines.py).
WORKER_THREADS = 16
#: Where credentials' encryption key is kept when DUALMCP_ENCRYPTION_KEY is not set.
KEY_FILE = "dualmcp.key"
#: Settings that would let the demo reach outside services; `--demo` runs without them.
OUTSIDE_WORLD_SETTINGS = (
    "smtp_url",
    "twilio_account_sid",
    "twilio_auth_token",
    "twilio_api_base",
    "openai_api_key",
    "openai_base_url",
    "anthropic_api_key",
    "anthropic_base_url",
)


@dataclass(frozen=True)
class StandaloneConfig:
    host: str
    port: int
    admin_key: str
    #: The one Settings of this process: the environment's, with standalone mode's own.
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def database_url(self) -> str:
        return self.settings.database_url


@dataclass
class Standalone:
    """What one standalone process runs, wired from one Settings; nothing started yet."""

    config: StandaloneConfig
    celery: Celery
    runtime: Runtime
    web: Flask


def standalone_config(
    host: str,
    port: int,
    demo: bool,
    environment: Settings | None = None,
    workdir: Path | None = None,
) -> StandaloneConfig:
    """The environment's settings (read now unless given) with standalone mode's own: SQLite in
    `workdir` (the working directory) unless DATABASE_URL is set, the in-memory broker and
    result backend, an in-process cache unless REDIS_URL answers, a local encryption key, and
    an admin key to print. The environment itself is left as it was."""
    base = environment if environment is not None else Settings()
    workdir = workdir or Path.cwd()
    given = base.model_fields_set
    own: dict[str, object] = {
        "celery_broker_url": "memory://localhost//",  # a host: kombu warns without one
        # Agent replies: the front end and the worker share this process, so memory is enough.
        "celery_result_backend": "cache+memory://",
    }
    if "database_url" not in given:
        own["database_url"] = f"sqlite:///{workdir / 'dualmcp.db'}"
    if not base.cache_url:
        redis_url = base.redis_url if "redis_url" in given else None
        own["cache_url"] = _reachable_redis(redis_url) or "memory://"
    if demo:  # the demo's CRM is served by this very process, on loopback
        if "http_allowlist" not in given:
            own["http_allowlist"] = host
        # The demo sends nothing to the outside world: LLM nodes answer with the echo
        # provider, email and SMS go to the outbox (GET /api/outbox).
        own.update(dict.fromkeys(OUTSIDE_WORLD_SETTINGS))
    if base.encryption_key is None or not base.encryption_key.get_secret_value():
        own["encryption_key"] = SecretStr(_local_encryption_key(workdir / KEY_FILE))
    env_keys = apikeys.parse_env_keys(base.api_keys)
    admin_key = next((key for scope, key in env_keys if scope == "admin"), None)
    if admin_key is None:
        admin_key = apikeys.new_key()
        own["api_keys"] = ",".join(filter(None, [base.api_keys, f"admin:{admin_key}"]))
    return StandaloneConfig(host, port, admin_key, base.model_copy(update=own))


def _local_encryption_key(path: Path) -> str:
    """The Fernet key of this installation's stored credentials, kept beside its database
    (created on first use, readable by its owner only) when DUALMCP_ENCRYPTION_KEY is unset."""
    if path.exists():
        return path.read_text().strip()
    key = new_key()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        sink.write(key + "\n")
    return key


def _reachable_redis(url: str | None) -> str | None:
    """`url` when it names a Redis that answers now; standalone never needs one."""
    if not url:
        return None
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except Exception:
        log.warning("REDIS_URL does not answer; agent memory is cached in-process")
        return None
    finally:
        client.close()
    return url


def build(config: StandaloneConfig, demo: bool) -> Standalone:
    """The Celery app, the worker's runtime and the Flask app, all from `config.settings`; the
    front end publishes through the worker's Celery app (one in-memory broker)."""
    settings = config.settings
    celery = make_celery(settings)
    # The in-memory transport polls; its default of one second would dominate every node.
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "polling_interval": 0.01,
    }
    web = create_app({"DUALMCP_DEMO": demo}, context=default_context(settings, celery))
    return Standalone(config, celery, make_runtime(settings, celery), web)


class PortInUse(Exception):
    """The port to serve on is taken: said before anything is created."""


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUse when `host:port` cannot be bound (the same way waitress binds it), so a
    busy port is one line, not a traceback after the database and key files were made."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            other = port + 1000 if port < 64000 else port - 1000
            raise PortInUse(
                f"port {port} on {host} is in use ({exc.strerror}); pick another: "
                f"make run PORT={other} (or dualmcp standalone --port {other})"
            ) from None


def run(host: str = "127.0.0.1", port: int = 8000, demo: bool = False) -> None:
    """Serve until interrupted; PortInUse before anything is created when the port is taken."""
    check_port_free(host, port)
    config = standalone_config(host, port, demo)
    settings = config.settings
    # Warnings only unless asked: the demo's printout is what a person reads here.
    configure_logging(settings, None if "log_level" in settings.model_fields_set else "WARNING")
    upgrade(settings.database_url)
    standalone = build(config, demo)
    # This process's app and runtime: the tasks the worker runs use them.
    use_celery(standalone.celery)
    set_runtime(standalone.runtime)
    start_worker(standalone.celery)
    start_sweeper(standalone.celery, settings.sweep_interval_s, settings.schedule_interval_s)

    server = create_server(standalone.web, host=host, port=port, threads=8)
    print(f"Dual MCP standalone: {config.url}")
    print(f"  pages: {config.url}/ui   API docs: {config.url}/api/docs")
    print(f"  admin API key: {config.admin_key}")
    print(f"  database: {config.database_url} (broker: in-memory)")
    if demo:
        print("  demo: offline (LLM nodes: echo provider; email and SMS: the outbox)")
        target = DemoServer(config.url, config.admin_key)
        threading.Thread(target=run_demo, args=(target,), daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:
        print("stopped")


def start_worker(celery: Celery) -> None:
    """A Celery WorkController in a daemon thread, consuming the in-memory broker."""
    worker = WorkController(
        app=celery,
        hostname="standalone@localhost",
        pool="threads",
        concurrency=WORKER_THREADS,
        queues=list(QUEUES_IN_ORDER),
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
    )
    threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()


def start_sweeper(celery: Celery, interval_s: float, schedule_interval_s: float) -> None:
    """What beat does in production: publish the sweeper and the schedule task periodically."""

    def loop(task_name: str, every_s: float) -> None:
        while True:
            time.sleep(every_s)
            try:
                celery.send_task(task_name, queue=NODES_QUEUE, ignore_result=True)
            except Exception:
                log.warning("could not publish %s", task_name, exc_info=True)

    for task_name, every_s in ((SWEEP, interval_s), (FIRE_SCHEDULES, schedule_interval_s)):
        threading.Thread(
            target=loop, args=(task_name, every_s), name=task_name, daemon=True
        ).start()
