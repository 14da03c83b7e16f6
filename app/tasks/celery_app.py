"""The Celery app, made by a factory from one Settings (DESIGN.md: Execution 4 and 7).

Nothing is made at import time. `make_celery(settings)` builds an app; a process that sends or
runs tasks uses one of its own: standalone mode installs its app with `use_celery`, and the
processes whose only configuration is the environment (`celery -A app.tasks worker|beat`, scripts
and tests that publish) get one made from `get_settings()` on first use (`process_celery`).
"""

from __future__ import annotations

import threading

from celery import Celery
from kombu import Queue

from app.config import Settings, get_settings

#: Continuations of runs already under way: served first (a raw chain runs breadth-first under a
#: burst, so every run finishes late).
NODES_QUEUE = "dualmcp.nodes"
#: Entry nodes of new runs.
RUNS_QUEUE = "dualmcp.runs"
#: Nodes whose type waits on the network (DUALMCP_SLOW_NODE_TYPES: LLM, agent, HTTP): served
#: by a threads-pool worker (`-Q dualmcp.slow -P threads -c 100`), so fast nodes never wait
#: behind them; last in the order, so a worker serving every queue takes fast work first.
SLOW_QUEUE = "dualmcp.slow"
#: Agent conversation turns (POST /api/mcp/process): someone is waiting, so served before new
#: runs but after continuations; `-Q dualmcp.agents` gives them workers of their own.
AGENTS_QUEUE = "dualmcp.agents"

#: Every queue, in the order a worker serving them all takes work (BRPOP, "priority" below).
QUEUES_IN_ORDER = (NODES_QUEUE, AGENTS_QUEUE, RUNS_QUEUE, SLOW_QUEUE)

# Task names: senders publish by name (`send_task`), so they need not import the task modules.
RUN_NODE = "dualmcp.run_node"
SWEEP = "dualmcp.sweep"
FIRE_SCHEDULES = "dualmcp.fire_schedules"
AGENT_PROCESS = "dualmcp.agent_process"


class DualMCPCelery(Celery):
    """A Celery app that keeps the Settings it was made from: the worker's signal receivers
    (app/tasks/telemetry.py) read these, which in standalone mode are not the environment's."""

    def __init__(self, settings: Settings, *, broker: str, backend: str, include: list[str]):
        super().__init__("dualmcp", broker=broker, backend=backend, include=include)
        self.settings = settings
        # Celery prefers CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the environment to its
        # configuration; the settings must win (standalone mode's are not the environment's).
        self.conf.update(broker_read_url=broker, broker_write_url=broker)
        self.backend_cls = backend


def make_celery(settings: Settings) -> DualMCPCelery:
    """A new Celery app configured from `settings` alone, never from the environment."""
    celery = DualMCPCelery(
        settings,
        broker=settings.broker_url,
        # Only dualmcp.agent_process stores a result (its reply, read by the waiting front end).
        backend=settings.result_backend_url,
        include=["app.tasks.nodes", "app.tasks.agents", "app.tasks.schedules"],
    )
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,  # PostgreSQL has the results (agent_process opts in)
        result_expires=3600,
        result_extended=True,  # a running turn's status names its agent and session
        result_serializer="json",
        task_serializer="json",
        accept_content=["json"],
        task_queues=[Queue(name) for name in QUEUES_IN_ORDER],
        task_default_queue=RUNS_QUEUE,
        broker_transport_options={
            # BRPOP the queues in the order above: continuations before new runs.
            "queue_order_strategy": "priority",
            # Above the longest node timeout, or a slow node is handed to a second worker.
            "visibility_timeout": settings.visibility_timeout,
            # A message whose worker died comes back only when a worker sweeps the unacked
            # set: kombu sweeps every interval x throttle s (10 x 10 by default), so a lost agent
            # turn (no sweeper of ours re-sends it) waited up to 100 s past the timeout. Sweep
            # every tenth of the timeout, 1 to 10 s (kombu/transport/redis.py restore_visible).
            "unacked_restore_interval": min(max(settings.visibility_timeout // 10, 1), 10),
            "unacked_restore_throttle": 1,
            # A worker killed mid-sweep leaves the sweep's lock to expire: kombu's 300 s would
            # stop every worker's sweep that long. Within the timeout, the worst case stays
            # the timeout plus one sweep period (a concurrent sweep is safe: each restore is a
            # WATCHed transaction).
            "unacked_mutex_expire": min(settings.visibility_timeout, 300),
            "socket_connect_timeout": 2,
        },
        # A broker outage must not hold a web request for long: the node stays pending in
        # PostgreSQL and the sweeper publishes it later (DESIGN.md: Execution 1).
        task_publish_retry_policy={
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.1,
            "interval_max": 0.2,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # SIGTERM: running nodes get this long to finish, then they are handed back
        # (app/tasks/shutdown.py); the stop grace period of compose/Kubernetes must exceed it.
        worker_soft_shutdown_timeout=settings.soft_shutdown_timeout_s,
        # Liveness without the broker (issue 16): the worker's and beat's own loops touch a
        # heartbeat file that `dualmcp healthcheck` reads (app/tasks/liveness.py).
        worker_consumer="app.tasks.liveness:HeartbeatConsumer",
        beat_scheduler="app.tasks.liveness:HeartbeatScheduler",
        beat_schedule={
            "dualmcp-sweeper": {
                "task": SWEEP,
                "schedule": settings.sweep_interval_s,
                "options": {"queue": NODES_QUEUE, "expires": settings.sweep_interval_s * 2},
            },
            "dualmcp-schedules": {
                "task": FIRE_SCHEDULES,
                "schedule": settings.schedule_interval_s,
                "options": {"queue": NODES_QUEUE, "expires": settings.schedule_interval_s * 2},
            },
        },
    )
    return celery


def settings_of(celery: Celery) -> Settings:
    """The Settings `celery` was made from; the environment's for an app made elsewhere."""
    return celery.settings if isinstance(celery, DualMCPCelery) else get_settings()


_process_app: Celery | None = None
_process_app_lock = threading.Lock()


def use_celery(celery: Celery) -> None:
    """Make `celery` this process's app, for every thread: shared tasks resolve their app per
    thread, and a thread that never saw it would use Celery's default (amqp) app (Flask's
    Celery pattern does the same)."""
    global _process_app
    _process_app = celery
    celery.set_default()


def process_celery() -> Celery:
    """This process's app: the one `use_celery` installed, else one made now from the
    environment's settings (the `celery -A app.tasks` entry point, scripts, tests)."""
    celery = _process_app
    if celery is None:
        with _process_app_lock:  # two threads publishing at once still make one app
            celery = _process_app or make_celery(get_settings())
            use_celery(celery)
    return celery
