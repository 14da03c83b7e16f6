"""app/metrics.py: what several processes count adds up in multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import REGISTRY

from app import metrics

REPO = Path(__file__).resolve().parents[1]


def test_llm_tokens_are_counted_by_provider() -> None:
    before = REGISTRY.get_sample_value("dualmcp_llm_tokens_total", {"provider": "echo"}) or 0
    metrics.record_llm_tokens("echo", 12)
    metrics.record_llm_tokens("echo", 0)
    after = REGISTRY.get_sample_value("dualmcp_llm_tokens_total", {"provider": "echo"})
    assert after == before + 12


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
                metrics.record_run_finished("succeeded")
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
    assert 'dualmcp_runs_finished_total{status="succeeded"} 3.0' in text
    assert 'dualmcp_node_duration_seconds_count{outcome="succeeded",type="webhook"} 3.0' in text


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
