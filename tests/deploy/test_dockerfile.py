"""deploy/Dockerfile: what cannot be built here (no Docker engine) is at least checked as text."""

from __future__ import annotations

import re
from pathlib import Path

DOCKERFILE = (Path(__file__).resolve().parents[2] / "deploy" / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    joined = DOCKERFILE.replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.+)$", joined, re.MULTILINE)]


def test_the_image_runs_as_a_non_root_user() -> None:
    users = _instructions("USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_the_image_has_a_role_aware_healthcheck() -> None:
    (healthcheck,) = _instructions("HEALTHCHECK")
    assert '"dualmcp", "healthcheck"' in healthcheck


def test_the_default_command_is_the_web_front_end_with_its_gunicorn_settings() -> None:
    (command,) = _instructions("CMD")
    assert "python:app.web.gunicorn_conf" in command and "app.web:create_app()" in command


def test_processes_log_json_and_share_metrics_across_forks() -> None:
    environment = " ".join(_instructions("ENV"))
    assert "DUALMCP_LOG_FORMAT=json" in environment
    assert "PROMETHEUS_MULTIPROC_DIR=" in environment
