"""The worker's and beat's heartbeat files (app/heartbeat.py), touched by their own loops.

Set in app/tasks/celery_app.py as `worker_consumer` and `beat_scheduler`. Each touch comes from
the loop whose life it reports, never from a thread of its own: a thread would keep touching
while the loop it stands for is stuck.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps
from celery.beat import PersistentScheduler
from celery.worker.consumer import Consumer

from app.heartbeat import Heartbeat
from app.tasks.celery_app import settings_of

log = logging.getLogger(__name__)


class EventLoopHeartbeat(bootsteps.StartStopStep):
    """While connected: a timer of the worker's event loop touches the file (its entries run
    only while that loop turns). Started again on every reconnection."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.timer_entry: Any = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        c.heartbeat.touch()
        self.timer_entry = c.timer.call_repeatedly(c.heartbeat.interval_s, c.heartbeat.touch)

    def stop(self, c: Any) -> None:
        if self.timer_entry is not None:
            self.timer_entry.cancel()
            self.timer_entry = None

    shutdown = stop


class HeartbeatConsumer(Consumer):
    """Celery's consumer, touching the worker's heartbeat from its main loop: by the event
    loop's timer while connected, and every second while it waits for the broker to come
    back (kombu's retry loop calls back each second), so a Redis outage is no reason to
    restart it (issue 16)."""

    class Blueprint(Consumer.Blueprint):  # type: ignore[misc,valid-type]
        default_steps = [
            *Consumer.Blueprint.default_steps,
            "app.tasks.liveness:EventLoopHeartbeat",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat = Heartbeat.of(settings_of(self.app), "worker")
        self.heartbeat.touch()

    def ensure_connected(self, conn: Any) -> Any:
        retry = conn.ensure_connection

        def ensure_connection_beating(*args: Any, callback: Any = None, **kwargs: Any) -> Any:
            def beat() -> None:
                self.heartbeat.touch()
                if callback is not None:
                    callback()

            return retry(*args, callback=beat, **kwargs)

        conn.ensure_connection = ensure_connection_beating
        self.heartbeat.touch()
        return super().ensure_connected(conn)


class HeartbeatScheduler(PersistentScheduler):
    """Beat's default scheduler, touching beat's heartbeat on every tick, with a tick at least
    once per touch interval. Ticks go on while Redis is down (each publish fails fast and is
    logged), so beat stays live through an outage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat = Heartbeat.of(settings_of(self.app), "beat")
        # Celery's stubs say int; tick() takes min() with it, so a float works.
        self.max_interval = min(self.max_interval or 300, self.heartbeat.interval_s)  # type: ignore[assignment]
        self.heartbeat.touch()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self.heartbeat.touch()
        return float(super().tick(*args, **kwargs))

    def _ensure_connected(self) -> Any:
        """Celery's, but touching the heartbeat while it retries: a beat started during a
        Redis outage waits here for its first publish (celery/beat.py, Scheduler)."""

        def report(exc: Exception, interval: float) -> None:
            log.error("beat: connection error: %s; trying again in %s s", exc, interval)

        return self.connection.ensure_connection(
            report, self.app.conf.broker_connection_max_retries, callback=self.heartbeat.touch
        )
