"""deploy/kubernetes/, checked against the official schemas of a fixed Kubernetes version
(kubernetes-validate), plus what the schemas cannot say: roles, counts and names agree, every pod
passes Pod Security "restricted", and the kustomizations put together what the docs say."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.config import Settings
from app.tasks.celery_app import AGENTS_QUEUE, NODES_QUEUE, RUNS_QUEUE, SLOW_QUEUE

#: The oldest Kubernetes still widely run that these manifests promise to fit.
KUBERNETES_VERSION = "1.31.0"
MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
#: Every manifest the official schemas cover: all but KEDA's custom resource and kustomize's own.
STANDARD = sorted(
    p for p in MANIFESTS.rglob("*.yaml") if "keda" not in p.parts and p.name != "kustomization.yaml"
)
KEDA = MANIFESTS / "overlays" / "keda" / "worker-scaledobject.yaml"
#: The Deployments that run `celery worker`, by the suffix of their name.
WORKERS = ("worker", "worker-io", "agents")


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
    hpa = _documents(MANIFESTS / "overlays" / "hpa" / "worker-hpa.yaml")[0]
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


def _config_text(name: str, default: str) -> str:
    data = _all()[("ConfigMap", "dualmcp-config")]["data"]
    return str(data.get(name, default))


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


def test_nodes_that_wait_have_a_threads_worker_deployment_of_their_own() -> None:
    """Issue 17: dualmcp.slow on one process per pod with 100 threads and a database pool sized
    for threads that hold a connection only to claim and complete; like the node workers
    otherwise, and no queue is left without a worker."""
    manifests = _all()
    deployment = manifests[("Deployment", "dualmcp-worker-io")]
    assert _queues(deployment) == {SLOW_QUEUE}
    worker, worker_io = _pod(manifests, "dualmcp-worker"), _pod(manifests, "dualmcp-worker-io")
    (node_container,) = worker["containers"]
    (io_container,) = worker_io["containers"]
    assert "--pool=threads" in io_container["command"]
    assert "--concurrency=100" in io_container["command"]
    assert {"name": "DUALMCP_DB_POOL_SIZE", "value": "10"} in io_container["env"]
    for key in ("image", "envFrom", "ports", "livenessProbe", "securityContext"):
        assert io_container[key] == node_container[key], key
    assert worker_io["terminationGracePeriodSeconds"] == worker["terminationGracePeriodSeconds"]
    served = set().union(
        *(_queues(manifests[("Deployment", f"dualmcp-{name}")]) for name in WORKERS)
    )
    assert served == {NODES_QUEUE, RUNS_QUEUE, AGENTS_QUEUE, SLOW_QUEUE}


def test_the_two_worker_deployments_never_select_each_others_pods() -> None:
    manifests = _all()
    for one, other in itertools.permutations(WORKERS, 2):
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
    scaled = {doc["metadata"]["name"]: doc for doc in _documents(KEDA)}
    assert set(scaled) == {"dualmcp-worker", "dualmcp-worker-io", "dualmcp-agents"}
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


# --- kustomize: what `kubectl apply -k <dir>` applies -------------------------------------------

#: The folders a user applies (docs/operations.md: Kubernetes).
OVERLAYS = {"hpa": "HorizontalPodAutoscaler", "keda": "ScaledObject"}
#: Pod volume types Pod Security "restricted" allows.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def _build(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k directory` applies: resources and components followed and
    the image setting applied (the part of kustomize these files use, and nothing else)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "components", "images"}
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        docs += _build(path) if path.is_dir() else _documents(path)
    images = list(kustomization.get("images", []))
    for entry in kustomization.get("components", []):
        component = yaml.safe_load((directory / entry / "kustomization.yaml").read_text())
        assert component["kind"] == "Component"
        images += component["images"]
    for image in images:
        for container in (c for doc in docs for c in _containers(doc)):
            if container["image"] == image["name"]:
                container["image"] = f"{image['newName']}:{image['newTag']}"
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    template = doc.get("spec", {}).get("template")
    return template["spec"]["containers"] if template else []


def _kinds(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(doc["kind"], doc["metadata"]["name"]) for doc in docs}


def test_each_overlay_applies_the_whole_app_with_one_kind_of_autoscaler() -> None:
    app = _kinds(_build(MANIFESTS / "base"))
    roles = ("web", "worker", "worker-io", "agents", "beat")
    assert {("Deployment", f"dualmcp-{role}") for role in roles} <= app
    assert ("ConfigMap", "dualmcp-config") in app
    for overlay, autoscaler in OVERLAYS.items():
        kinds = _kinds(_build(MANIFESTS / "overlays" / overlay))
        added = kinds - app
        assert {kind for kind, _ in added} == {autoscaler}, overlay
        assert {name for _, name in added} == {
            "dualmcp-worker",
            "dualmcp-worker-io",
            "dualmcp-agents",
        }, overlay


def test_every_pod_runs_the_one_image_set_in_one_place() -> None:
    setting = yaml.safe_load((MANIFESTS / "image" / "kustomization.yaml").read_text())
    (image,) = setting["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    for folder in (MANIFESTS / "overlays" / "hpa", MANIFESTS / "migrate"):
        images = {c["image"] for doc in _build(folder) for c in _containers(doc)}
        assert images == {expected}, folder


def test_the_migration_brings_the_settings_it_runs_with() -> None:
    assert _kinds(_build(MANIFESTS / "migrate")) == {
        ("ConfigMap", "dualmcp-config"),
        ("Job", "dualmcp-migrate"),
    }


def test_every_manifest_belongs_to_a_kustomization_and_none_applies_alone() -> None:
    """`kubectl apply -f deploy/kubernetes/` used to apply both autoscalers at once: nothing is
    left at the top, and every file but the secret example is reached from a kustomization."""
    assert list(MANIFESTS.glob("*.yaml")) == []
    reached: set[Path] = set()

    def walk(directory: Path) -> None:
        kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
        reached.add(directory / "kustomization.yaml")
        for entry in kustomization.get("resources", []) + kustomization.get("components", []):
            path = (directory / entry).resolve()
            if path.is_dir():
                walk(path)
            else:
                reached.add(path)

    for folder in (MANIFESTS / "overlays" / "hpa", MANIFESTS / "overlays" / "keda"):
        walk(folder)
    walk(MANIFESTS / "migrate")
    every = set(MANIFESTS.rglob("*.yaml")) - {MANIFESTS / "examples" / "secret.yaml"}
    assert every - reached == set()


def _restricted_problems(pod: dict[str, Any]) -> list[str]:
    """What Pod Security Standards "restricted" (v1.31) refuses in a pod spec."""
    problems = []
    pod_context = pod.get("securityContext", {})
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(flag)
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    for container in pod["containers"] + pod.get("initContainers", []):
        context = container.get("securityContext", {})
        name = container["name"]
        if context.get("privileged"):
            problems.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if not context.get("runAsNonRoot", pod_context.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            problems.append(f"{name}: runs as uid 0")
        seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile must be RuntimeDefault")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            problems.append(f"{name}: hostPort")
    return problems


def test_every_pod_passes_pod_security_restricted() -> None:
    pods = [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for folder in (MANIFESTS / "overlays" / "hpa", MANIFESTS / "migrate")
        for doc in _build(folder)
        if "template" in doc.get("spec", {})
    ]
    assert len(pods) == 6
    assert {name: _restricted_problems(pod) for name, pod in pods} == {name: [] for name, _ in pods}


def test_the_restricted_check_refuses_a_pod_without_seccomp() -> None:
    pod = _pod(_all(), "dualmcp-web")
    del pod["securityContext"]["seccompProfile"]
    assert _restricted_problems(pod) == ["web: seccompProfile must be RuntimeDefault"]


# --- probes: each tests what its promise needs (issue 16) ----------------------------------------

#: The roles whose liveness is their own loop's heartbeat file, by Deployment.
LOOP_ROLES = {
    "dualmcp-worker": "worker",
    "dualmcp-worker-io": "worker",
    "dualmcp-agents": "worker",
    "dualmcp-beat": "beat",
}


def _container(name: str) -> dict[str, Any]:
    (container,) = _pod(_all(), name)["containers"]
    return container


def test_web_is_ready_on_readyz_and_live_on_healthz() -> None:
    """/readyz needs only PostgreSQL: a Redis outage keeps the web pods in the Service."""
    web = _container("dualmcp-web")
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("name", sorted(LOOP_ROLES))
def test_worker_and_beat_liveness_reads_their_heartbeat_not_the_broker(name: str) -> None:
    probe = _container(name)["livenessProbe"]
    assert probe["exec"]["command"] == ["dualmcp", "healthcheck", "--role", LOOP_ROLES[name]]
    assert "readinessProbe" not in _container(name)  # no Service routes to them


@pytest.mark.parametrize("name", sorted(LOOP_ROLES))
def test_the_heartbeat_directory_is_writable_in_a_read_only_container(name: str) -> None:
    container = _container(name)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    heartbeat_dir = _config_text("DUALMCP_HEARTBEAT_DIR", Settings().heartbeat_dir)
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert heartbeat_dir in mounts


@pytest.mark.parametrize("name", sorted(LOOP_ROLES))
def test_a_live_loop_never_fails_its_probe_and_a_stuck_one_is_restarted(name: str) -> None:
    """A live loop touches its file every quarter of the window: a probe never sees it stale.
    One that stopped is restarted within a few windows, and the command has time to start."""
    probe = _container(name)["livenessProbe"]
    window = _config("DUALMCP_HEARTBEAT_MAX_AGE_S", Settings().heartbeat_max_age_s)
    restart_after = window + probe["periodSeconds"] * probe["failureThreshold"]
    assert restart_after <= 4 * window
    assert probe["timeoutSeconds"] >= 10  # the command's Python start-up, on a busy node
    assert (
        probe.get("initialDelaySeconds", 0) + probe["periodSeconds"] * probe["failureThreshold"]
        >= window
    )  # a slow start is not a stuck loop
