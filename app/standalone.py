"""`dualmcp standalone`: the web front end and a worker in one process, with no services.

SQLite in the working directory and Celery's in-memory broker replace PostgreSQL and Redis
(credentials are encrypted with DUALMCP_ENCRYPTION_KEY, else a key kept in ./dualmcp.key);
agent memory and configs are cached in-process (or in Redis when REDIS_URL answers), and agent
replies wait in Celery's in-memory result backend. Everything else is the production code
path: the same Flask app, the same Celery tasks run by a real Celery WorkController (a thread
pool), and the same sweeper task published on a timer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import apikeys

log = logging.getLogger(__name__)

WORKER_THREADS = 4
#: Where credentials' encryption key is kept when DUALMCP_ENCRYPTION_KEY is not set.
KEY_FILE = "dualmcp.key"
#: Settings that would let the demo reach outside services; `--demo` runs without them.
OUTSIDE_WORLD_SETTINGS = (
    "SMTP_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_BASE",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
)


@dataclass(frozen=True)
class StandaloneConfig:
    host: str
    port: int
    admin_key: str
    database_url: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def configure_environment(host: str, port: int, demo: bool) -> StandaloneConfig:
    """Point the settings at SQLite and the in-memory broker; pick the admin key to print."""
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{Path.cwd() / 'dualmcp.db'}")
    os.environ["CELERY_BROKER_URL"] = "memory://localhost//"  # a host: kombu warns without one
    # Agent replies: the front end and the worker share this process, so memory is enough.
    os.environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
    if not os.environ.get("DUALMCP_CACHE_URL"):
        os.environ["DUALMCP_CACHE_URL"] = (
            _reachable_redis(os.environ.get("REDIS_URL")) or "memory://"
        )
    if demo:  # the demo's CRM is served by this very process, on loopback
        os.environ.setdefault("DUALMCP_HTTP_ALLOWLIST", host)
        # The demo sends nothing to the outside world: LLM nodes answer with the echo
        # provider, email and SMS go to the outbox (GET /api/outbox).
        for name in OUTSIDE_WORLD_SETTINGS:
            os.environ.pop(name, None)
    if not os.environ.get("DUALMCP_ENCRYPTION_KEY"):
        os.environ["DUALMCP_ENCRYPTION_KEY"] = _local_encryption_key(Path.cwd() / KEY_FILE)
    env_keys = apikeys.parse_env_keys(os.environ.get("DUALMCP_API_KEYS", ""))
    admin_key = next((key for scope, key in env_keys if scope == "admin"), None)
    if admin_key is None:
        admin_key = apikeys.new_key()
        prefix = os.environ.get("DUALMCP_API_KEYS", "")
        os.environ["DUALMCP_API_KEYS"] = ",".join(filter(None, [prefix, f"admin:{admin_key}"]))
    return StandaloneConfig(host, port, admin_key, os.environ["DATABASE_URL"])


def _local_encryption_key(path: Path) -> str:
    """The Fernet key of this installation's stored credentials, kept beside its database
    (created on first use, readable by its owner only) when DUALMCP_ENCRYPTION_KEY is unset."""
    if path.exists():
        return path.read_text().strip()
    from app.credentials.crypto import new_key

    key = new_key()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as sink:
        sink.write(key + "\n")
    return key


def _reachable_redis(url: str | None) -> str | None:
    """`url` when it names a Redis that answers now; standalone never needs one."""
    if not url:
        return None
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except Exception:
        log.warning("REDIS_URL does not answer; agent memory is cached in-process")
        return None
    finally:
        client.close()
    return url


def run(host: str = "127.0.0.1", port: int = 8000, demo: bool = False) -> None:
    """Serve until interrupted."""
    config = configure_environment(host, port, demo)
    from app.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    from app.logs import configure_logging

    # Warnings only unless asked: the demo's printout is what a person reads here.
    configure_logging(settings, None if "DUALMCP_LOG_LEVEL" in os.environ else "WARNING")

    from app.models.migrate import upgrade

    upgrade(settings.database_url)
    start_worker()
    start_sweeper(settings.sweep_interval_s, settings.schedule_interval_s)

    from waitress import create_server

    from app.web import create_app

    web = create_app({"DUALMCP_DEMO": demo})
    server = create_server(web, host=host, port=port, threads=8)
    print(f"Dual MCP standalone: {config.url}")
    print(f"  admin API key: {config.admin_key}")
    print(f"  database: {config.database_url} (broker: in-memory)")
    if demo:
        print("  demo: offline (LLM nodes: echo provider; email and SMS: the outbox)")
    if demo:
        from app.demo import run_demo

        threading.Thread(target=run_demo, args=(config,), daemon=True).start()
    try:
        server.run()
    except KeyboardInterrupt:
        print("stopped")


def start_worker() -> None:
    """A Celery WorkController in a daemon thread, consuming the in-memory broker."""
    from celery.worker import WorkController

    from app.tasks import AGENTS_QUEUE, NODES_QUEUE, RUNS_QUEUE, celery

    # The in-memory transport polls; its default of one second would dominate every node.
    celery.conf.broker_transport_options = {
        **celery.conf.broker_transport_options,
        "polling_interval": 0.01,
    }
    worker = WorkController(
        app=celery,
        hostname="standalone@localhost",
        pool="threads",
        concurrency=WORKER_THREADS,
        queues=[NODES_QUEUE, AGENTS_QUEUE, RUNS_QUEUE],
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
    )
    threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()


def start_sweeper(interval_s: float, schedule_interval_s: float) -> None:
    """What beat does in production: publish the sweeper and the schedule task periodically."""
    from celery import Task

    from app.tasks import NODES_QUEUE
    from app.tasks.nodes import sweep
    from app.tasks.schedules import fire_schedules

    def loop(task: Task[Any, Any], every_s: float) -> None:
        while True:
            time.sleep(every_s)
            try:
                task.apply_async(queue=NODES_QUEUE)
            except Exception:
                log.warning("could not publish %s", task.name, exc_info=True)

    for task, every_s in ((sweep, interval_s), (fire_schedules, schedule_interval_s)):
        threading.Thread(target=loop, args=(task, every_s), name=task.name, daemon=True).start()
