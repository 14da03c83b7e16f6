"""docker-compose.yml, checked by Debian's `docker-compose config` (no Docker engine needed),
and .env.example, which must name every setting the code reads."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from app.tasks.celery_app import AGENTS_QUEUE, NODES_QUEUE, RUNS_QUEUE, SLOW_QUEUE

REPO = Path(__file__).resolve().parents[2]
#: The services that run `celery worker`.
WORKERS = ("worker", "worker-io", "agents")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as Compose resolves it with the example settings."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail(
            "docker-compose is required (Debian package docker-compose); .ci/test.sh installs it",
            pytrace=False,
        )
    result = subprocess.run(
        [tool, "--env-file", ".env.example", "-f", "docker-compose.yml", "config"],
        cwd=REPO,
        env={**os.environ, "DUALMCP_ENV_FILE": ".env.example"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def _seconds(duration: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", str(duration)))


def _queues(command: list[str]) -> set[str]:
    """The queues a `celery worker` command consumes (`-Q a,b`): each worker must name them."""
    assert "-Q" in command, command
    return set(command[command.index("-Q") + 1].split(","))


def test_every_service_ops_expect_is_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "redis",
        "migrate",
        "web",
        "worker",
        "worker-io",
        "agents",
        "beat",
        "flower",
    }


def test_postgres_and_redis_keep_their_data_in_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    assert any(":/data" in v for v in services["redis"]["volumes"])
    assert {"postgres-data", "redis-data"} <= set(compose["volumes"])


def test_the_broker_never_evicts_and_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_web_worker_and_beat_start_only_after_the_migrations(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["dualmcp", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "worker-io", "agents", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert "gunicorn" in services["web"]["command"]


def test_node_workers_and_agent_workers_serve_separate_queues(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _queues(services["worker"]["command"]) == {NODES_QUEUE, RUNS_QUEUE}
    assert _queues(services["agents"]["command"]) == {AGENTS_QUEUE}
    assert "--concurrency=4" in services["agents"]["command"]


def test_nodes_that_wait_have_a_threads_worker_of_their_own(compose: dict[str, Any]) -> None:
    """Issue 17: LLM, agent and HTTP nodes on dualmcp.slow, a hundred in flight per process,
    with a database pool sized for threads that hold a connection only to claim and complete."""
    worker_io = compose["services"]["worker-io"]
    command = worker_io["command"]
    assert _queues(command) == {SLOW_QUEUE}
    assert "--pool=threads" in command and "--concurrency=100" in command
    assert worker_io["environment"]["DUALMCP_DB_POOL_SIZE"] == "10"
    every_queue = set().union(*(_queues(compose["services"][name]["command"]) for name in WORKERS))
    assert every_queue == {NODES_QUEUE, RUNS_QUEUE, AGENTS_QUEUE, SLOW_QUEUE}  # none unserved


def test_workers_scale_and_shut_down_warm(compose: dict[str, Any]) -> None:
    settings = Settings()
    for name in WORKERS:
        worker = compose["services"][name]
        assert "ports" not in worker and "container_name" not in worker, name  # --scale works
        assert worker["stop_signal"] == "SIGTERM", name
        assert _seconds(worker["stop_grace_period"]) >= settings.soft_shutdown_timeout_s + 20
        assert worker["environment"]["DUALMCP_ROLE"] == "worker", name  # the healthcheck's role
        assert worker["environment"]["DUALMCP_WORKER_METRICS_PORT"] == "9808", name


def test_an_agent_worker_stopping_lets_its_running_turns_end(compose: dict[str, Any]) -> None:
    """Turns are not handed back on SIGTERM: a SIGKILL first would strand one until the
    visibility timeout."""
    settings = Settings()
    grace = _seconds(compose["services"]["agents"]["stop_grace_period"])
    assert grace >= settings.agent_turn_deadline_s + settings.llm_timeout_s


def test_flower_listens_on_localhost_only_by_default(compose: dict[str, Any]) -> None:
    assert compose["services"]["flower"]["ports"][0].startswith("127.0.0.1:")


def test_flower_asks_for_the_basic_auth_of_the_settings(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    example = re.search(r"^FLOWER_BASIC_AUTH=(.+)$", (REPO / ".env.example").read_text(), re.M)
    assert example is not None
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == example.group(1)
    assert "http://127.0.0.1:5555/healthcheck" in " ".join(flower["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ("FLOWER_BASIC_AUTH", "set FLOWER_BASIC_AUTH=user:password in .env"),
        ("DUALMCP_ENCRYPTION_KEY", "set DUALMCP_ENCRYPTION_KEY in .env"),
        ("POSTGRES_PASSWORD", "set POSTGRES_PASSWORD in .env"),
    ],
)
def test_compose_refuses_to_start_without_a_required_secret(
    setting: str, said: str, tmp_path: Path
) -> None:
    example = (REPO / ".env.example").read_text()
    without = re.sub(rf"^{setting}=.*$", "", example, flags=re.M)
    assert without != example
    (tmp_path / "without.env").write_text(without)
    tool = shutil.which("docker-compose")
    assert tool is not None
    result = subprocess.run(
        [tool, "--env-file", str(tmp_path / "without.env"), "-f", "docker-compose.yml", "config"],
        cwd=REPO,
        env={**os.environ, "DUALMCP_ENV_FILE": str(tmp_path / "without.env")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert said in result.stderr


def test_the_app_containers_log_json_and_share_metrics_across_processes(
    compose: dict[str, Any],
) -> None:
    for name in ("web", "worker", "worker-io", "agents", "beat", "migrate"):
        environment = compose["services"][name]["environment"]
        assert environment["DUALMCP_LOG_FORMAT"] == "json", name
        assert environment["PROMETHEUS_MULTIPROC_DIR"], name


def test_env_example_names_every_setting_and_every_compose_variable() -> None:
    example = (REPO / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    settings = {
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
    }
    compose_file = (REPO / "docker-compose.yml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)[:}?-]", compose_file))
    assert settings - named == set(), "add these settings to .env.example"
    assert interpolated - named - {"DUALMCP_ENV_FILE"} == set(), "add these to .env.example"


def test_app_containers_check_their_own_loop_never_the_broker(compose: dict[str, Any]) -> None:
    """They use the image's HEALTHCHECK (`dualmcp healthcheck`, by DUALMCP_ROLE): a worker's or
    beat's heartbeat file, the web's /healthz. Nothing in it needs Redis (issue 16)."""
    services = compose["services"]
    roles = {"web": "web", "worker": "worker", "worker-io": "worker", "agents": "worker"}
    roles["beat"] = "beat"
    for name, role in roles.items():
        assert services[name]["environment"]["DUALMCP_ROLE"] == role, name
        override = services[name].get("healthcheck", {}).get("test", ["dualmcp healthcheck"])
        assert "dualmcp healthcheck" in " ".join(override), name
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    assert 'CMD ["dualmcp", "healthcheck"]' in dockerfile
