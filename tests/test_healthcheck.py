"""`dualmcp healthcheck`: the web when /healthz answers; a worker or beat while its own loop keeps
its heartbeat file fresh, whatever the broker does (a one-line reason if not)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.cli import main
from app.config import Settings
from app.healthcheck import check
from app.heartbeat import Heartbeat, LoopRole, heartbeat_path, touch_interval_s
from tests.http_peer import HttpPeer


def test_web_is_healthy_when_healthz_answers(http_peer: HttpPeer) -> None:
    http_peer.reply("/healthz", json={"status": "ok"})
    assert check("web", http_peer.port) is None


def test_web_is_unhealthy_when_nothing_listens() -> None:
    reason = check("web", 9)  # the discard port: nothing listens on loopback
    assert reason is not None and "refused" in reason.lower()


def test_the_command_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["healthcheck", "--role", "web", "--port", "9"]) == 1
    assert capsys.readouterr().out.startswith("web: ")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(heartbeat_dir=str(tmp_path), heartbeat_max_age_s=30)


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_a_loop_is_healthy_while_its_heartbeat_is_fresh(role: LoopRole, settings: Settings) -> None:
    Heartbeat.of(settings, role).touch()
    assert check(role, settings=settings) is None


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_a_loop_is_unhealthy_once_its_heartbeat_is_older_than_the_window(
    role: LoopRole, settings: Settings
) -> None:
    path = heartbeat_path(settings, role)
    path.touch()
    old = time.time() - 31
    os.utime(path, (old, old))
    reason = check(role, settings=settings)
    assert reason is not None and "31 s old (max 30 s)" in reason


def test_a_loop_that_never_started_is_unhealthy(settings: Settings) -> None:
    reason = check("worker", settings=settings)
    assert reason is not None and "no heartbeat file" in reason


def test_the_liveness_of_a_loop_needs_no_broker(tmp_path: Path) -> None:
    """A broker nobody listens on (port 9) changes nothing: Redis down restarts no worker."""
    settings = Settings(
        heartbeat_dir=str(tmp_path), redis_url="redis://127.0.0.1:9/0", heartbeat_max_age_s=30
    )
    Heartbeat.of(settings, "worker").touch()
    assert check("worker", settings=settings) is None


def test_a_heartbeat_asked_every_second_writes_at_most_twice_an_interval(tmp_path: Path) -> None:
    settings = Settings(heartbeat_dir=str(tmp_path), heartbeat_max_age_s=400)
    assert touch_interval_s(settings) == 100
    heartbeat = Heartbeat.of(settings, "worker")
    heartbeat.touch()
    path = heartbeat_path(settings, "worker")
    old = time.time() - 10
    os.utime(path, (old, old))
    heartbeat.touch()  # within half an interval of the first: no write
    assert path.stat().st_mtime == pytest.approx(old)
