"""deploy/kubernetes/, checked against the official schemas of a fixed Kubernetes version
(kubernetes-validate), plus what the schemas cannot say: roles, counts and names agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.tasks.celery_app import NODES_QUEUE, RUNS_QUEUE

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


def test_web_worker_beat_and_the_migration_run_one_image_as_non_root() -> None:
    manifests = _all()
    images = set()
    pods = [manifests[("Deployment", f"dualmcp-{role}")] for role in ("web", "worker", "beat")]
    for manifest in [*pods, manifests[("Job", "dualmcp-migrate")]]:
        pod = manifest["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        images |= {container["image"] for container in pod["containers"]}
    assert len(images) == 1


def test_beat_is_one_replica_replaced_never_doubled() -> None:
    beat = _all()[("Deployment", "dualmcp-beat")]["spec"]
    assert beat["replicas"] == 1
    assert beat["strategy"]["type"] == "Recreate"


def test_a_worker_is_given_time_to_hand_its_nodes_back() -> None:
    manifests = _all()
    worker = manifests[("Deployment", "dualmcp-worker")]["spec"]["template"]["spec"]
    config = manifests[("ConfigMap", "dualmcp-config")]["data"]
    soft_timeout = float(
        config.get("DUALMCP_SOFT_SHUTDOWN_TIMEOUT_S", Settings().soft_shutdown_timeout_s)
    )
    assert worker["terminationGracePeriodSeconds"] >= soft_timeout + 20


def test_the_service_routes_to_the_web_pods() -> None:
    manifests = _all()
    selector = manifests[("Service", "dualmcp-web")]["spec"]["selector"]
    labels = manifests[("Deployment", "dualmcp-web")]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_the_autoscalers_drive_the_worker_deployment_on_its_queues() -> None:
    hpa = _all()[("HorizontalPodAutoscaler", "dualmcp-worker")]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "dualmcp-worker",
    }
    # KEDA is a CRD the official schemas do not hold: check what matters by hand.
    keda = _documents(MANIFESTS / "keda" / "worker-scaledobject.yaml")[0]
    assert keda["apiVersion"] == "keda.sh/v1alpha1" and keda["kind"] == "ScaledObject"
    assert keda["spec"]["scaleTargetRef"]["name"] == "dualmcp-worker"
    queues = {trigger["metadata"]["listName"] for trigger in keda["spec"]["triggers"]}
    assert queues == {NODES_QUEUE, RUNS_QUEUE}


def test_settings_in_the_config_map_and_secret_are_ones_the_code_reads() -> None:
    manifests = _all()
    known = {
        field.validation_alias.choices[0]  # type: ignore[union-attr]
        for field in Settings.model_fields.values()
    } | {"PROMETHEUS_MULTIPROC_DIR"}
    config = set(manifests[("ConfigMap", "dualmcp-config")]["data"])
    secret = set(manifests[("Secret", "dualmcp-secrets")]["stringData"])
    assert (config | secret) - known == set()
