"""The time the running node has left, for clients that would otherwise wait longer.

A node's timeout stops Python code (SIGALRM in a prefork child, the watchdog of
app/workflows/deadlines.py in a thread), but on the threads pool a blocking socket read ends only
at its client's own timeout: the LLM SDKs' is DUALMCP_LLM_TIMEOUT_S, longer than most nodes'. So
the node's deadline is also kept here, per thread, and an SDK call asks `capped()` for its
per-request timeout: a read on a stalled server ends when the node's time does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The shortest per-request timeout handed out: a node at its very end still gets a well-formed
#: timeout (its deadline stops it a moment later anyway).
MIN_TIMEOUT_S = 0.05

_local = threading.local()


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Within the block, `capped` hands out at most the time left of `seconds` (nested blocks:
    the earlier end wins)."""
    previous: float | None = getattr(_local, "until", None)
    until = time.monotonic() + seconds
    _local.until = until if previous is None else min(previous, until)
    try:
        yield
    finally:
        _local.until = previous


def capped(seconds: float) -> float:
    """`seconds`, or the time the running node has left when that is shorter."""
    until: float | None = getattr(_local, "until", None)
    if until is None:
        return seconds
    return max(min(seconds, until - time.monotonic()), MIN_TIMEOUT_S)
