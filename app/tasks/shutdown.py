"""Graceful worker shutdown: after SIGTERM, running nodes get `worker_soft_shutdown_timeout`
seconds to finish; those still running then are handed back, so a deploy or a scale-down never
leaves a node waiting for its lease to expire.

Celery's warm shutdown (SIGTERM, what Docker and Kubernetes send) stops taking messages and
waits for running tasks without limit. Here the main process arms a timer when it begins; when
the timer fires, each pool child still running a node gets SIGTERM, which the child turns into
HandBack inside the driver (app/workflows/handback.py): the node returns to pending and is
published again for another worker. Celery's own soft shutdown (SIGQUIT) waits the same timeout,
then terminates the children with SIGTERM, which hands their nodes back the same way.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from celery import current_app
from celery.signals import task_prerun, worker_process_init, worker_shutting_down

from app.tasks.celery_app import RUN_NODE
from app.workflows.handback import interrupt

log = logging.getLogger(__name__)

_timer: threading.Timer | None = None


@worker_shutting_down.connect
def _arm_hand_back_timer(how: str = "", **_kwargs: Any) -> None:
    """In the main process, on the first warm shutdown signal (from a signal handler: no I/O)."""
    global _timer
    if how != "Warm" or _timer is not None:
        return
    timeout = float(current_app.conf.worker_soft_shutdown_timeout or 0)
    _timer = threading.Timer(timeout, hand_back_running_nodes)
    _timer.daemon = True
    _timer.start()


def hand_back_running_nodes() -> int:
    """Signal every pool child still running a node; return how many were signalled."""
    from celery.worker import state

    signalled = 0
    for request in list(state.active_requests):
        pid = request.worker_pid
        if request.name != RUN_NODE or not pid or pid == os.getpid():
            continue  # the solo and thread pools run tasks in this process: nothing to signal
        try:
            os.kill(pid, signal.SIGTERM)
            signalled += 1
        except ProcessLookupError:
            continue
    if signalled:
        log.warning("soft shutdown timeout reached: handing back %d running node(s)", signalled)
    return signalled


_in_pool_child = False
_previous_handler: Any = None


@worker_process_init.connect
def _mark_pool_child(**_kwargs: Any) -> None:
    global _in_pool_child
    _in_pool_child = True


@task_prerun.connect
def _install_hand_back_handler(**_kwargs: Any) -> None:
    """In a prefork child, at its first task: SIGTERM during a driver call hands the node back.

    Not at worker_process_init: billiard installs its own SIGTERM handler after that signal.
    Never in the main process (the solo pool), whose SIGTERM is Celery's warm shutdown.
    """
    global _previous_handler
    if not _in_pool_child or _previous_handler is not None:
        return
    _previous_handler = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    interrupt()  # raises HandBack into a running driver
    # No driver running: stop as billiard would. Between a driver and its commit the commit is
    # lost with the process; the lease then expires and the sweeper hands the node out again.
    if callable(_previous_handler):
        _previous_handler(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
