"""Liveness of the worker and beat: a file each process touches while its own loop runs.

A liveness check through the broker (the old `celery inspect ping`) fails during a Redis outage,
so every worker and beat was restarted although nothing was wrong with them (issue 16). The
file is touched by the process's main loop (app/tasks/liveness.py), also while it waits for the
broker to come back, and goes stale only when that loop stops: `dualmcp healthcheck` reads its
age. One file per role in DUALMCP_HEARTBEAT_DIR: one container, one process of each role.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

from app.config import Settings

log = logging.getLogger(__name__)

LoopRole = Literal["worker", "beat"]

#: How many touches fit in the freshness window: one late touch (a slow publish, a tick that
#: waited) never makes a live process look dead.
TOUCHES_PER_WINDOW = 4


def heartbeat_path(settings: Settings, role: LoopRole) -> Path:
    return Path(settings.heartbeat_dir) / f"dualmcp-{role}.heartbeat"


def touch_interval_s(settings: Settings) -> float:
    """How often a live process touches its file."""
    return settings.heartbeat_max_age_s / TOUCHES_PER_WINDOW


class Heartbeat:
    """The file of one process, touched at most twice per interval however often it is asked
    (the worker's reconnection loop asks every second)."""

    def __init__(self, path: Path, interval_s: float) -> None:
        self.path = path
        self.interval_s = interval_s
        self._last = float("-inf")

    @classmethod
    def of(cls, settings: Settings, role: LoopRole) -> Heartbeat:
        return cls(heartbeat_path(settings, role), touch_interval_s(settings))

    def touch(self) -> None:
        now = time.monotonic()
        if now - self._last < self.interval_s / 2:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        except OSError as exc:  # never stop the loop it reports on; the healthcheck will say
            log.warning("cannot touch the heartbeat file %s: %s", self.path, exc)
            return
        self._last = now


def staleness(settings: Settings, role: LoopRole) -> str | None:
    """None while the role's file was touched within DUALMCP_HEARTBEAT_MAX_AGE_S, else why not."""
    path = heartbeat_path(settings, role)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return f"no heartbeat file {path} (has the {role} started?)"
    if age > settings.heartbeat_max_age_s:
        limit = settings.heartbeat_max_age_s
        return f"{path} is {age:.0f} s old (max {limit:g} s): its loop stopped"
    return None
