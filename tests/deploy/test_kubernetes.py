"""deploy/kubernetes/, checked against the official schemas of a fixed Kubernetes version
(kubernetes-validate), plus what the schemas cannot say: roles, counts and names agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.tasks.celery_app import AGENTS_QUEUE, NODES_QUEUE, RUNS_QUEUE

#: The oldest Kubernetes still widely run that these manifests promise to fit.
KUBERNETES_VERSION = "1.31.0"
MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: Every manifest the official schemas cover: all but KEDA's custom resource.
STANDARD = sorted(p for p in MANIFESTS.rglob("*.yaml") if "keda" not in p.parts)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all() -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for path in STANDARD:
        for doc in _documents(path):
            found[(doc["kind"], doc["metadata"]["name"])] = doc
    return found


@pytest.mark.parametrize("path", STANDARD, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_each_manifest_is_valid_for_the_pinned_kubernetes(path: Path) -> None:
    for doc in _documents(path):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_really_refuses_a_wrong_field() -> None:
    hpa = _documents(MANIFESTS / "worker-hpa.yaml")[0]
    hpa["spec"]["minReplicaz"] = 2
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)


def _pod(manifests: dict[tuple[str, str], dict[str, Any]], name: str) -> dict[str, Any]:
    pod: dict[str, Any] = manifests[("Deployment", name)]["spec"]["template"]["spec"]
    return pod


def _queues(deployment: dict[str, Any]) -> set[str]:
    """The queues its `celery worker` consumes (`-Q a,b`): each worker must name them."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert "-Q" in command, command
    return set(command[command.index("-Q") + 1].split(","))


def _config(name: str, default: float) -> float:
    data = _all()[("ConfigMap", "dualmcp-config")]["data"]
    return float(data.get(name, default))


def test_web_workers_beat_and_the_migration_run_one_image_as_non_root() -> None:
    manifests = _all()
    images = set()
    roles = ("web", "worker", "agents", "beat")
    pods = [manifests[("Deployment", f"dualmcp-{role}")] for role in roles]
    for manifest in [*pods, manifests[("Job", "dualmcp-migrate")]]:
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        images |= {container["image"] for container in pod["containers"]}
    assert len(images) == 1


def test_beat_is_one_replica_replaced_never_doubled() -> None:
    beat = _all()[("Deployment", "dualmcp-beat")]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"


def test_node_workers_and_agent_workers_serve_separate_queues() -> None:
    manifests = _all()
    assert _queues(manifests[("Deployment", "dualmcp-worker")]) == {NODES_QUEUE, RUNS_QUEUE}
    assert _queues(manifests[("Deployment", "dualmcp-agents")]) == {AGENTS_QUEUE}


def test_the_two_worker_deployments_never_select_each_others_pods() -> None:
    manifests = _all()
    for one, other in (("worker", "agents"), ("agents", "worker")):
        selector = manifests[("Deployment", f"dualmcp-{one}")]["spec"]["selector"]["matchLabels"]
        labels = manifests[("Deployment", f"dualmcp-{other}")]["spec"]["template"]["metadata"]
        assert not selector.items() <= labels["labels"].items(), (one, other)


def test_agent_workers_run_like_node_workers_but_for_the_command() -> None:
    manifests = _all()
    worker, agents = _pod(manifests, "dualmcp-worker"), _pod(manifests, "dualmcp-agents")
    assert agents["securityContext"] == worker["securityContext"]
    assert agents["volumes"] == worker["volumes"]
    (node_container,) = worker["containers"]
    (agent_container,) = agents["containers"]
    for key in ("image", "env", "envFrom", "ports", "livenessProbe", "securityContext"):
        assert agent_container[key] == node_container[key], key
    assert {"name": "DUALMCP_ROLE", "value": "worker"} in agent_container["env"]


def test_a_worker_is_given_time_to_hand_its_nodes_back() -> None:
    worker = _pod(_all(), "dualmcp-worker")
    soft_timeout = _config("DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S", Settings().soft_shutdown_timeout_s)
    assert worker["terminationGracePeriodSeconds"] >= soft_timeout + 20


def test_an_agent_worker_stopping_lets_its_running_turns_end() -> None:
    """Turns are not handed back on SIGTERM: a SIGKILL first would strand one until the
    visibility timeout."""
    agents = _pod(_all(), "dualmcp-agents")
    settings = Settings()
    deadline = _config("DUALMCP_AGENT_TURN_DEADLINE_S", settings.agent_turn_deadline_s)
    llm_timeout = _config("DUALMCP_LLM_TIMEOUT_S", settings.llm_timeout_s)
    assert agents["terminationGracePeriodSeconds"] >= deadline + llm_timeout


def test_the_service_routes_to_the_web_pods() -> None:
    manifests = _all()
    selector = manifests[("Service", "dualmcp-web")]["spec"]["selector"]
    labels = manifests[("Deployment", "dualmcp-web")]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_the_autoscalers_drive_each_worker_deployment_on_its_own_queues() -> None:
    manifests = _all()
    # KEDA is a CRD the official schemas do not hold: check what matters by hand.
    scaled = {
        doc["metadata"]["name"]: doc
        for doc in _documents(MANIFESTS / "keda" / "worker-scaledobject.yaml")
    }
    assert set(scaled) == {"dualmcp-worker", "dualmcp-agents"}
    for name in scaled:
        hpa = manifests[("HorizontalPodAutoscaler", name)]["spec"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        assert hpa["scaleTargetRef"] == target
        keda = scaled[name]
        assert keda["apiVersion"] == "keda.sh/v1alpha1" and keda["kind"] == "ScaledObject"
        assert keda["spec"]["scaleTargetRef"]["name"] == name
        queues = {trigger["metadata"]["listName"] for trigger in keda["spec"]["triggers"]}
        assert queues == _queues(manifests[("Deployment", name)]), name


def test_settings_in_the_config_map_and_secret_are_ones_the_code_reads() -> None:
    manifests = _all()
    known = {
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
    } | {"PROMETHEUS_MULTIPROC_DIR"}
    config = set(manifests[("ConfigMap", "dualmcp-config")]["data"])
    secret = set(manifests[("Secret", "dualmcp-secrets")]["stringData"])
    assert (config | secret) - known == set()
