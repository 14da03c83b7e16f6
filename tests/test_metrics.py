"""app/metrics.py: what several processes count adds up in multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest

from app import metrics

REPO = Path(__file__).resolve().parents[1]


def test_llm_tokens_are_counted_by_provider() -> None:
    before = REGISTRY.get_sample_value("dualmcp_llm_tokens_total", {"provider": "echo"}) or 0
    metrics.record_llm_tokens("echo", 12)
    metrics.record_llm_tokens("echo", 0)
    after = REGISTRY.get_sample_value("dualmcp_llm_tokens_total", {"provider": "echo"})
    assert after == before + 12


def test_workflows_past_the_cap_are_counted_as_other() -> None:
    labels = metrics.WorkflowLabels()
    assert [labels.label(w, 2) for w in ("a", "b", "c", "a", "d", "b")] == [
        "a",
        "b",
        "other",
        "a",
        "other",
        "b",
    ]


def test_a_cap_of_zero_names_no_workflow() -> None:
    assert metrics.WorkflowLabels().label("a", 0) == "other"


def test_runs_finished_are_counted_by_status_and_workflow() -> None:
    labels = {"status": "failed", "workflow": "counted-by-workflow"}
    before = REGISTRY.get_sample_value("dualmcp_runs_finished_total", labels) or 0
    metrics.record_run_finished("failed", "counted-by-workflow", max_workflows=10_000)
    assert REGISTRY.get_sample_value("dualmcp_runs_finished_total", labels) == before + 1


def test_an_undeclared_http_method_is_labelled_other() -> None:
    labels = {"method": "other", "route": "/api/runs", "status": "405"}
    before = REGISTRY.get_sample_value("dualmcp_http_request_duration_seconds_count", labels) or 0
    metrics.record_http_request("BREW", "/api/runs", 405, 0.001)
    after = REGISTRY.get_sample_value("dualmcp_http_request_duration_seconds_count", labels)
    assert after == before + 1


def test_the_exposition_has_no_created_series() -> None:
    metrics.record_run_finished("succeeded", "no-created", max_workflows=10_000)
    metrics.record_http_request("GET", "/healthz", 200, 0.001)
    text = generate_latest(metrics.exposition_registry()).decode()
    assert "dualmcp_runs_finished_total{" in text
    assert "_created" not in text


def test_forked_processes_add_up_in_the_multiprocess_directory(tmp_path: Path) -> None:
    """What gunicorn workers and Celery's prefork children do: each forks after import, counts
    in its own file, and one scrape shows the sum."""
    script = textwrap.dedent(
        """
        import os
        from app import metrics
        from prometheus_client import generate_latest

        for _ in range(3):
            pid = os.fork()
            if pid == 0:
                metrics.record_run_finished("succeeded", "forked", max_workflows=50)
                metrics.record_node_duration("webhook", "succeeded", 0.2)
                os._exit(0)
            os.waitpid(pid, 0)
        print(generate_latest(metrics.exposition_registry()).decode())
        """
    )
    env = {**os.environ, metrics.MULTIPROC_ENV: str(tmp_path / "prom")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode()
    text = result.stdout.decode()
    assert 'dualmcp_runs_finished_total{status="succeeded",workflow="forked"} 3.0' in text
    assert 'dualmcp_node_duration_seconds_count{outcome="succeeded",type="webhook"} 3.0' in text
    assert "_created" not in text


def test_resetting_the_directory_keeps_this_process_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(metrics.MULTIPROC_ENV, str(tmp_path))
    (tmp_path / "counter_1.db").write_bytes(b"old")
    own = tmp_path / f"counter_{os.getpid()}.db"
    own.write_bytes(b"mine")
    (tmp_path / "notes.txt").write_text("not ours")

    metrics.reset_multiprocess_dir()

    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([own.name, "notes.txt"])


def test_an_llm_call_counts_its_tokens_by_provider() -> None:
    from app.config import Settings
    from app.llm import ChatMessage, LLMConfig, LLMProviders
    from app.metrics import LLM_TOKENS

    before = LLM_TOKENS.labels("echo")._value.get()
    providers = LLMProviders(Settings(), None)
    completion = providers.complete(
        [ChatMessage("user", "three small words")], "", LLMConfig(provider="echo")
    )
    assert LLM_TOKENS.labels("echo")._value.get() - before == sum(completion.usage.values()) > 0
