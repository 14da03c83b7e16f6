"""A node's deadline in any thread: one watchdog thread per process raises NodeTimeout into the
node's thread when its time is up (issue 17: the I/O pool runs nodes in threads, where SIGALRM
cannot reach them).

Like the SIGALRM handler it stands in for, the exception is raised between two bytecodes of the
node's thread (`PyThreadState_SetAsyncExc`): a Python loop or a template stops at once, a
blocking call (a socket read, `time.sleep`) when it returns, which the clients' own timeouts
bound. A deadline that is left never fires afterwards: whoever takes its one token first, the
node leaving or the watchdog firing, decides; a node that loses waits for the watchdog's raise,
clears it if still pending, and raises NodeTimeout itself unless the block already saw it. The
node's thread takes no lock, so an exception arriving while it arms or leaves holds none.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import queue
import threading
import time
from types import TracebackType
from typing import Literal

from app.errors import NodeTimeout

log = logging.getLogger(__name__)

#: Whether this interpreter can raise into another thread (CPython); elsewhere `ThreadDeadline`
#: reports that it cannot, and the drivers' own timeouts are the limit.
SUPPORTED = hasattr(ctypes, "pythonapi") and hasattr(ctypes.pythonapi, "PyThreadState_SetAsyncExc")


class DeadlineExpired(NodeTimeout):
    """The exception the watchdog raises (a class, as SetAsyncExc takes: it carries no
    message; invoke_driver words it with the node's timeout)."""


class _Entry:
    __slots__ = ("delivered", "raised", "thread_id", "token", "when")

    def __init__(self, thread_id: int, when: float) -> None:
        self.thread_id = thread_id
        self.when = when
        #: One token: popped by the node leaving (cancel) or by the watchdog (fire), never both.
        self.token = [True]
        #: Set by the watchdog once its SetAsyncExc call has returned.
        self.raised = False
        #: Set when the exception was raised in the thread (not cleared before it was).
        self.delivered = False


class Watchdog:
    """One daemon thread and a heap of deadlines (not a thread per node)."""

    def __init__(self) -> None:
        self._arrivals: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._compact_at = 1024
        self._thread = threading.Thread(target=self._watch, name="dualmcp-deadlines", daemon=True)
        self._thread.start()

    def arm(self, seconds: float) -> _Entry:
        """A deadline `seconds` from now for the calling thread."""
        entry = _Entry(threading.get_ident(), time.monotonic() + seconds)
        self._arrivals.put(entry)  # SimpleQueue.put: atomic, no Python-level lock
        return entry

    def pending(self) -> int:
        """Deadlines the watchdog still holds, left ones included until they are compacted."""
        return len(self._heap) + self._arrivals.qsize()

    def _watch(self) -> None:
        while True:
            timeout = None
            if self._heap:
                timeout = max(self._heap[0][0] - time.monotonic(), 0)
            try:
                entry = self._arrivals.get(timeout=timeout)
            except queue.Empty:
                pass
            else:
                heapq.heappush(self._heap, (entry.when, next(self._order), entry))
                self._compact()
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _, _, due = heapq.heappop(self._heap)
                try:
                    _fire(due)
                except Exception:  # one bad entry must not end every later deadline
                    log.exception("could not raise a node's timeout in thread %s", due.thread_id)

    def _compact(self) -> None:
        """Drop left deadlines once the heap doubles: long timeouts at a high node rate would
        otherwise keep every finished node's entry until its time."""
        if len(self._heap) < self._compact_at:
            return
        self._heap = [item for item in self._heap if item[2].token]
        heapq.heapify(self._heap)
        self._compact_at = max(1024, 2 * len(self._heap))


def _fire(entry: _Entry) -> None:
    try:
        entry.token.pop()
    except IndexError:
        return  # the node left in time
    try:
        _set_async_exc(entry.thread_id, _expired_for(entry))
    finally:
        entry.raised = True  # the node leaving waits for this, even if the raise failed


def _expired_for(entry: _Entry) -> type[DeadlineExpired]:
    """A DeadlineExpired of this entry's own, that notes when the thread raises it (the
    interpreter makes the instance then): the node leaving must know whether its block saw it."""

    class Expired(DeadlineExpired):
        deadline = entry

        def __init__(self, *args: object) -> None:
            entry.delivered = True
            super().__init__(*args)

    Expired.__name__ = Expired.__qualname__ = "DeadlineExpired"
    return Expired


def _set_async_exc(thread_id: int, exc: type[BaseException] | None) -> int:
    """Raise `exc` in the thread at its next bytecode; None clears one not raised yet."""
    target = ctypes.py_object(exc) if exc is not None else None
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target))


_watchdog: tuple[int, Watchdog] | None = None
_watchdog_lock = threading.Lock()


def watchdog() -> Watchdog:
    """This process's watchdog, started on first use (and again in a forked child, which has
    its parent's object but not its thread)."""
    global _watchdog
    current = _watchdog
    if current is None or current[0] != os.getpid():
        with _watchdog_lock:
            current = _watchdog
            if current is None or current[0] != os.getpid():
                current = (os.getpid(), Watchdog())
                _watchdog = current
    return current[1]


class ThreadDeadline:
    """`with ThreadDeadline(s):` raises NodeTimeout in the block after `s` seconds.

    Works in any thread of a CPython process; `armed` is False where it cannot (then nothing
    is enforced). Nests: each level fires on its own time.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = SUPPORTED
        self._entry: _Entry | None = None

    def __enter__(self) -> ThreadDeadline:
        if self.armed:
            self._entry = watchdog().arm(self.seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        entry = self._entry
        if entry is None:
            return False
        try:
            entry.token.pop()
            return False  # left in time: the watchdog will never fire this one
        except IndexError:
            pass
        # The watchdog fired: wait for its raise to be set, then clear it if still pending.
        # One raised here, while leaving, is caught so that the wait ends; it is raised again
        # below (as is another deadline's, an outer block's, caught the same way).
        caught: list[DeadlineExpired] = []
        while True:
            try:
                while not entry.raised:
                    time.sleep(0)
                _set_async_exc(entry.thread_id, None)
                break
            except DeadlineExpired as late:
                caught.append(late)
        others = [late for late in caught if getattr(late, "deadline", None) is not entry]
        if others:
            raise others[0]
        if entry.delivered and not caught:
            return False  # the block saw its timeout (and raised it on, or handled it)
        if exc_type is not None:
            return False  # the block's own error goes on
        raise DeadlineExpired
