"""`dualmcp healthcheck`: healthy when the role's dependency answers, a one-line reason if not."""

from __future__ import annotations

import pytest

from app.cli import main
from app.healthcheck import check
from tests.http_peer import HttpPeer


def test_web_is_healthy_when_healthz_answers(http_peer: HttpPeer) -> None:
    http_peer.reply("/healthz", json={"status": "ok"})
    assert check("web", http_peer.port) is None


def test_web_is_unhealthy_when_nothing_listens() -> None:
    reason = check("web", 9)  # the discard port: nothing listens on loopback
    assert reason is not None and "refused" in reason.lower()


def test_beat_is_healthy_when_the_broker_answers(redis_url: str) -> None:
    assert check("beat") is None


def test_the_command_exits_1_with_the_reason(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["healthcheck", "--role", "web", "--port", "9"]) == 1
    assert capsys.readouterr().out.startswith("web: ")
