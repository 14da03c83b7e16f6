"""Production roles refuse to start without DUALMCP_ENCRYPTION_KEY, saying how to make one, and
warn loudly while the examples' secrets are in use (app/startup_checks.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.config import Settings
from app.credentials.crypto import new_key
from app.startup_checks import EXAMPLE_ADMIN_KEY, EXAMPLE_ENCRYPTION_KEY, check

REPO = Path(__file__).resolve().parents[1]
#: How each production role is started (docker-compose.yml, deploy/kubernetes/base).
ROLES = {
    "web": [
        sys.executable, "-m", "gunicorn", "-c", "python:app.web.gunicorn_conf",
        "--bind", "127.0.0.1:0", "app.web:create_app()",
    ],
    "worker": [sys.executable, "-m", "celery", "-A", "app.tasks", "worker", "--pool=solo"],
    "beat": [sys.executable, "-m", "celery", "-A", "app.tasks", "beat"],
}  # fmt: skip


def test_a_missing_key_is_a_refusal_that_says_how_to_make_one() -> None:
    report = check(Settings(DUALMCP_ENCRYPTION_KEY=None))
    (refusal,) = report.refusals
    assert "DUALMCP_ENCRYPTION_KEY is not set" in refusal
    assert "dualmcp keys new-encryption-key" in refusal


def test_a_malformed_key_is_a_refusal_that_does_not_quote_it() -> None:
    report = check(Settings(DUALMCP_ENCRYPTION_KEY="not-a-fernet-key"))
    (refusal,) = report.refusals
    assert "not a Fernet key" in refusal and "not-a-fernet-key" not in refusal


def test_the_examples_secrets_start_but_warn() -> None:
    report = check(
        Settings(
            DUALMCP_ENCRYPTION_KEY=EXAMPLE_ENCRYPTION_KEY,
            DUALMCP_API_KEYS=f"admin:{EXAMPLE_ADMIN_KEY}",
        )
    )
    assert report.refusals == []
    assert len(report.warnings) == 2
    assert "example's key" in report.warnings[0] and EXAMPLE_ADMIN_KEY in report.warnings[1]


def test_own_secrets_start_quietly() -> None:
    report = check(Settings(DUALMCP_ENCRYPTION_KEY=new_key(), DUALMCP_API_KEYS="admin:k" * 3))
    assert report.refusals == [] and report.warnings == []


def test_the_examples_ship_the_placeholders_the_roles_recognise() -> None:
    env_example = (REPO / ".env.example").read_text()
    assert f"\nDUALMCP_ENCRYPTION_KEY={EXAMPLE_ENCRYPTION_KEY}" in env_example
    assert f"\nDUALMCP_API_KEYS=admin:{EXAMPLE_ADMIN_KEY}" in env_example
    secret = yaml.safe_load((REPO / "deploy/kubernetes/examples/secret.yaml").read_text())
    assert secret["stringData"]["DUALMCP_ENCRYPTION_KEY"] == EXAMPLE_ENCRYPTION_KEY
    assert secret["stringData"]["DUALMCP_API_KEYS"] == f"admin:{EXAMPLE_ADMIN_KEY}"


@pytest.mark.parametrize("role", ROLES)
def test_a_production_role_without_a_key_stops_at_once_saying_why(
    role: str, tmp_path: Path
) -> None:
    environment = {
        key: value for key, value in os.environ.items() if key != "DUALMCP_ENCRYPTION_KEY"
    }
    environment.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'never-made.db'}",
        REDIS_URL="redis://127.0.0.1:9/0",  # nothing listens: a role that got further would hang
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    done = subprocess.run(
        ROLES[role], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert f"dualmcp {role} cannot start: DUALMCP_ENCRYPTION_KEY is not set" in done.stderr
    assert "dualmcp keys new-encryption-key" in done.stderr
    assert not (tmp_path / "never-made.db").exists()
