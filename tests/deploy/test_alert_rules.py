"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`), firing when it
should (`promtool test rules alerts_test.yml`), and only about metrics the code exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import app.metrics  # noqa: F401  (registers the counters and histograms)

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
#: Gauges the web computes at scrape time (app/web/metrics.py), not in the registry.
SCRAPE_TIME_GAUGES = {"dualmcp_queue_depth", "dualmcp_queue_depth_limit", "dualmcp_runs_active"}


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail(
            "promtool is required (Debian package prometheus); `.ci/services.sh tools` installs it",
            pytrace=False,
        )
    return subprocess.run([tool, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60)


def test_the_rules_are_valid_for_prometheus() -> None:
    checked = _promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_rules_fire_when_and_only_when_their_tests_say() -> None:
    tested = _promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def _exported() -> set[str]:
    """Every series name the code exports (a labelled metric has no sample until used)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = set(SCRAPE_TIME_GAUGES)
    for family in REGISTRY.collect():
        if family.name.startswith("dualmcp_"):
            exported |= {family.name + end for end in suffixes.get(family.type, ("",))}
    return exported


def test_every_metric_a_rule_reads_is_one_the_code_exports() -> None:
    read = set(re.findall(r"\bdualmcp_[a-z_]+", (RULES_DIR / "alerts.yml").read_text()))
    assert read - _exported() == set()
    assert {"dualmcp_sweeps_total", "dualmcp_node_duration_seconds_bucket"} <= read


def test_the_dashboard_queries_are_valid_and_chart_only_exported_metrics(tmp_path: Path) -> None:
    path = RULES_DIR.parent / "grafana" / "dualmcp-dashboard.json"
    dashboard = json.loads(path.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    read = {name for expr in exprs for name in re.findall(r"\bdualmcp_[a-z_]+", expr)}
    assert read - _exported() == set()
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    # promtool parses PromQL in rules files: one recording rule per query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    (tmp_path / "dashboard-queries.yml").write_text(json.dumps(rules))
    checked = _promtool("check", "rules", str(tmp_path / "dashboard-queries.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
