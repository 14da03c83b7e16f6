"""How gunicorn serves the front end: its worker class, threads and keep-alive, in one place.

app/web/gunicorn_conf.py sets them as gunicorn's defaults, so every launcher (compose,
Kubernetes, the docs' command line) agrees; the bench's bare-Flask floor is launched with the
same ones, or the floor would not be comparable. Measured in bench/README.md ("goodput").
"""

from __future__ import annotations

#: Threads, not sync workers: a sync worker closes every connection after one answer, so a
#: sender that keeps its connection pays a TCP handshake per trigger (issue 17), and a
#: run-events stream would hold a whole process.
WORKER_CLASS = "gthread"
#: Per process; a run-events stream holds one (DUALMCP_RUN_EVENTS_MAX_STREAMS stays below it).
THREADS = 4
#: Seconds an idle connection is kept: longer than a sender's pause between deliveries. An idle
#: kept connection waits in the worker's poller, holding no thread.
KEEPALIVE_S = 5


def gunicorn_flags() -> list[str]:
    """The same settings as command-line flags, for a gunicorn launched without our config."""
    return [f"--worker-class={WORKER_CLASS}", f"--threads={THREADS}", f"--keep-alive={KEEPALIVE_S}"]
