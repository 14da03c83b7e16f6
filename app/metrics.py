"""Prometheus metrics: named metric objects and one tiny function per event.

Every call on the hot path is a counter increment or a histogram observation: no I/O, no lock
held across anything slow. Gauges that need I/O (queue depth, runs in flight) are read at scrape
time instead (app/web/metrics.py).

Several processes (gunicorn workers, Celery's prefork children) add up through
`PROMETHEUS_MULTIPROC_DIR`, which prometheus_client reads when this module is first imported:
set it in the environment before starting the process, one directory per process tree
(`exposition_registry` below serves what all of them wrote).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: The environment variable prometheus_client reads to share metrics between processes.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

if os.environ.get(MULTIPROC_ENV):  # its files are opened as the metrics below are made
    Path(os.environ[MULTIPROC_ENV]).mkdir(parents=True, exist_ok=True)

# issue 16: every counter's `*_created` twin doubled the series for nothing a query uses.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: The label of the workflows past a process's DUALMCP_METRICS_MAX_WORKFLOWS, and of routes
#: and methods nobody declared: label sets stay bounded whatever the traffic.
OTHER = "other"

TRIGGERS_ACCEPTED = Counter(
    "dualmcp_triggers_accepted",
    "Triggers that started a new run, by source (webhook, api, schedule).",
    ["source"],
)
TRIGGERS_REPLAYED = Counter(
    "dualmcp_triggers_replayed",
    "Repeated deliveries answered with the run their first delivery started.",
    ["source"],
)
TRIGGERS_REFUSED = Counter(
    "dualmcp_triggers_refused",
    "Triggers refused, by source and reason (the error code, or invalid_signature:<why>).",
    ["source", "reason"],
)
RUNS_FINISHED = Counter(
    "dualmcp_runs_finished",
    "Runs that reached a terminal status (succeeded, failed, cancelled), by workflow "
    "(past DUALMCP_METRICS_MAX_WORKFLOWS per process: other).",
    ["status", "workflow"],
)
HTTP_REQUEST_DURATION = Histogram(
    "dualmcp_http_request_duration_seconds",
    "Time the web took to answer, by method, route template (other: no route) and status.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
NODE_DURATION = Histogram(
    "dualmcp_node_duration_seconds",
    "Time a node's driver took, by node type and outcome (succeeded, failed, retrying).",
    ["type", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SWEEPS = Counter("dualmcp_sweeps", "Sweeper passes (one per beat tick): zero means beat is down.")
SWEEPER_REDELIVERIES = Counter(
    "dualmcp_sweeper_redeliveries",
    "Node messages the sweeper sent again: lease_expired (a worker was lost) or not_picked_up "
    "(a message was lost, or a retry came due).",
    ["reason"],
)
NODES_WORKER_LOST = Counter(
    "dualmcp_nodes_worker_lost",
    "Nodes failed because their worker was lost more than DUALMCP_MAX_REDELIVERIES times.",
)
NODE_HANDBACKS = Counter(
    "dualmcp_node_handbacks",
    "Nodes a stopping worker handed back unfinished (warm shutdown past its soft timeout).",
)
LLM_TOKENS = Counter(
    "dualmcp_llm_tokens", "LLM tokens used (prompt and completion), by provider.", ["provider"]
)


def record_trigger_accepted(source: str) -> None:
    TRIGGERS_ACCEPTED.labels(source).inc()


def record_trigger_replayed(source: str) -> None:
    TRIGGERS_REPLAYED.labels(source).inc()


def record_trigger_refused(source: str, reason: str) -> None:
    TRIGGERS_REFUSED.labels(source, reason).inc()


def record_run_finished(status: str, workflow_id: str, *, max_workflows: int) -> None:
    """A run ended; `max_workflows` is DUALMCP_METRICS_MAX_WORKFLOWS (the cap, per process)."""
    RUNS_FINISHED.labels(status, WORKFLOW_LABELS.label(workflow_id, max_workflows)).inc()


def record_http_request(method: str, route: str, status: int, seconds: float) -> None:
    """One answered request; `route` is a url_rule template or OTHER, never a raw path."""
    method = method if method in _METHODS else OTHER
    HTTP_REQUEST_DURATION.labels(method, route, str(status)).observe(seconds)


#: Methods named as themselves; any other (werkzeug accepts any token) is OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class WorkflowLabels:
    """The first `cap` workflow ids a process meets are labels; the rest are OTHER.

    Per process, so each gunicorn worker or prefork child names at most `cap` workflows (a
    scrape's union may hold more): a bound on series, not an exact top-N.
    """

    def __init__(self) -> None:
        self._named: set[str] = set()
        self._lock = threading.Lock()

    def label(self, workflow_id: str, cap: int) -> str:
        if workflow_id in self._named:  # the usual case: no lock
            return workflow_id
        with self._lock:
            if len(self._named) >= cap:
                return OTHER
            self._named.add(workflow_id)
        return workflow_id


WORKFLOW_LABELS = WorkflowLabels()


def record_node_duration(node_type: str, outcome: str, seconds: float) -> None:
    NODE_DURATION.labels(node_type, outcome).observe(seconds)


def record_sweep(lease_expired: int, not_picked_up: int, worker_lost: int) -> None:
    SWEEPS.inc()
    if lease_expired:
        SWEEPER_REDELIVERIES.labels("lease_expired").inc(lease_expired)
    if not_picked_up:
        SWEEPER_REDELIVERIES.labels("not_picked_up").inc(not_picked_up)
    if worker_lost:
        NODES_WORKER_LOST.inc(worker_lost)


def record_node_handback() -> None:
    NODE_HANDBACKS.inc()


def record_llm_tokens(provider: str, n: int) -> None:
    """Count `n` tokens (prompt + completion) used with `provider` (openai, anthropic, echo)."""
    if n > 0:
        LLM_TOKENS.labels(provider).inc(n)


def is_multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition_registry(*extra: Collector) -> CollectorRegistry:
    """What a scrape shows: every process's files in multiprocess mode (else this process's
    metrics), plus `extra` collectors that read their values at scrape time."""
    registry = CollectorRegistry(auto_describe=True)
    if is_multiprocess():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    for collector in extra:
        registry.register(collector)
    return registry


class _ThisProcess(Collector):
    """The default registry's metrics (these, and the process and platform collectors)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def reset_multiprocess_dir() -> None:
    """Empty the directory before a process tree starts (prometheus_client's advice: files of
    an earlier run would be added to this one's). Call it in the parent, before fork; the
    calling process's own files (`<kind>_<pid>.db`, opened at import) are kept."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    own = f"_{os.getpid()}.db"
    for entry in directory.glob("*.db"):  # prometheus_client's files only, nothing else
        if not entry.name.endswith(own):
            entry.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker exited: drop its live-gauge files (counters are kept, as they must)."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
