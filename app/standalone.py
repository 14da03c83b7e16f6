"""`dualmcp standalone`: the web front end and a worker in one process, with no services.

SQLite in the working directory and Celery's in-memory broker replace PostgreSQL and Redis;
everything else is the production code path: the same Flask app, the same Celery tasks run by a
real Celery WorkController (a thread pool), and the same sweeper task published on a timer.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from app import apikeys

log = logging.getLogger(__name__)

WORKER_THREADS = 4


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
    os.environ["CELERY_BROKER_URL"] = "memory://"
    if demo:  # the demo's CRM is served by this very process, on loopback
        os.environ.setdefault("DUALMCP_HTTP_ALLOWLIST", host)
    env_keys = apikeys.parse_env_keys(os.environ.get("DUALMCP_API_KEYS", ""))
    admin_key = next((key for scope, key in env_keys if scope == "admin"), None)
    if admin_key is None:
        admin_key = apikeys.new_key()
        prefix = os.environ.get("DUALMCP_API_KEYS", "")
        os.environ["DUALMCP_API_KEYS"] = ",".join(filter(None, [prefix, f"admin:{admin_key}"]))
    return StandaloneConfig(host, port, admin_key, os.environ["DATABASE_URL"])


def run(host: str = "127.0.0.1", port: int = 8000, demo: bool = False) -> None:
    """Serve until interrupted."""
    config = configure_environment(host, port, demo)
    from app.config import get_settings

    get_settings.cache_clear()
    settings = get_settings()

    from app.models.migrate import upgrade

    upgrade(settings.database_url)
    start_worker()
    start_sweeper(settings.sweep_interval_s)

    from waitress import create_server

    from app.web import create_app

    web = create_app({"DUALMCP_DEMO": demo})
    server = create_server(web, host=host, port=port, threads=8)
    print(f"Dual MCP standalone: {config.url}")
    print(f"  admin API key: {config.admin_key}")
    print(f"  database: {config.database_url} (broker: in-memory)")
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

    from app.tasks import NODES_QUEUE, RUNS_QUEUE, celery

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
        queues=[NODES_QUEUE, RUNS_QUEUE],
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel="WARNING",
    )
    threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()


def start_sweeper(interval_s: float) -> None:
    """What beat does in production: publish the sweeper task every few seconds."""
    from app.tasks import NODES_QUEUE
    from app.tasks.nodes import sweep

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                sweep.apply_async(queue=NODES_QUEUE)
            except Exception:
                log.warning("could not publish the sweeper task", exc_info=True)

    threading.Thread(target=loop, name="sweeper", daemon=True).start()
