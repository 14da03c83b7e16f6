"""deploy/Dockerfile: what cannot be built here (no Docker engine) is at least checked as text."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "deploy" / "Dockerfile").read_text()


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


def _position(instruction: str, needle: str) -> int:
    """The index, among all instructions, of the first `instruction` containing `needle`."""
    joined = DOCKERFILE.replace("\\\n", " ")
    lines = [line.strip() for line in joined.splitlines() if re.match(r"^[A-Z]+\s", line)]
    found = (i for i, line in enumerate(lines) if line.startswith(instruction) and needle in line)
    return next(found)


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    """A code change must reuse the dependency layer, not install every dependency again."""
    lock_installed = _position("RUN", "--requirement requirements.lock")
    assert _position("COPY", "requirements.lock") < lock_installed < _position("COPY", "app")


def test_the_app_itself_adds_no_dependency_the_lock_does_not_pin() -> None:
    (install,) = [run for run in _instructions("RUN") if "install --no-deps ." in run]
    assert "pip check" in install


def test_the_image_carries_oci_labels_with_the_package_version() -> None:
    labels = " ".join(_instructions("LABEL"))
    for key in ("title", "description", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    (version_arg,) = [arg for arg in _instructions("ARG") if arg.startswith("VERSION=")]
    assert version_arg == f"VERSION={version('dualmcp')}"


def test_the_build_context_leaves_out_local_state_and_secrets() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    git_ignored = set((REPO / ".gitignore").read_text().split())
    for pattern in ("dualmcp.key", "*.db", "*.db-wal", "*.db-shm", "celerybeat-schedule*", ".env"):
        assert pattern in ignored and pattern in git_ignored, pattern
