"""Runs over HTTP: status, the paged list, cancel, and both kinds of retry."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import NodeRun, WorkflowRun
from app.workflows import NodeRef
from tests.http_peer import HttpPeer
from tests.web.conftest import ADMIN, ADMIN_KEY, READ, READ_KEY
from tests.web.factories import drive, fetch_then_shape, save, start, two_step, unique_id

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    """The suite's settings, allowed to fetch from the local HTTP peer."""
    return Settings(
        DATABASE_URL=database_url,
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY},read:{READ_KEY}",
        DUALMCP_MAX_BODY_BYTES=64 * 1024,
        CELERY_BROKER_URL="memory://",
        DUALMCP_HTTP_ALLOWLIST="127.0.0.1",
    )


class CommitCheckingPublisher:
    """Records what is published, and the node statuses another connection saw at that moment:
    a message sent before its commit would find the node in its old state."""

    def __init__(self) -> None:
        self.published: list[NodeRef] = []
        self.seen: list[str] = []
        self.sessions: sessionmaker[Session] | None = None

    def __call__(self, refs: list[NodeRef]) -> None:
        self.published.extend(refs)
        assert self.sessions is not None
        with self.sessions() as session:
            for ref in refs:
                status = session.scalar(
                    select(NodeRun.status).where(
                        NodeRun.run_id == uuid.UUID(ref.run_id), NodeRun.node_id == ref.node_id
                    )
                )
                self.seen.append(str(status))


@pytest.fixture
def publisher(web_sessions: sessionmaker[Session]) -> CommitCheckingPublisher:
    recorder = CommitCheckingPublisher()
    recorder.sessions = web_sessions
    return recorder


def finished_run(sessions: sessionmaker[Session], settings: Settings, payload: Any = None) -> str:
    workflow_id = save(sessions, two_step())
    started = start(sessions, workflow_id, payload)
    drive(sessions, settings, started.to_publish)
    return started.run_id


def failed_run(
    sessions: sessionmaker[Session], settings: Settings, peer: HttpPeer, payload: Any = None
) -> str:
    """A run whose fetch failed once (503); the peer answers 200 from then on."""
    route = f"/{unique_id('flaky')}"
    peer.reply(route, json={"ok": True}, fail_times=1)
    workflow_id = save(sessions, fetch_then_shape(peer.url + route))
    started = start(sessions, workflow_id, payload)
    drive(sessions, settings, started.to_publish)
    return started.run_id


def statuses(client: FlaskClient, run_id: str) -> dict[str, str]:
    run = client.get(f"/api/runs/{run_id}", headers=READ).json
    assert run is not None
    return {node["node_id"]: node["status"] for node in run["nodes"]} | {"@run": run["status"]}


def workflow_of(client: FlaskClient, run_id: str) -> str:
    run = client.get(f"/api/runs/{run_id}", headers=READ).json
    assert run is not None
    return str(run["workflow_id"])


# --- reading one run -------------------------------------------------------------------------


def test_the_seed_status_path_returns_the_run_with_its_nodes(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    run_id = finished_run(web_sessions, web_settings, {"lead": 7})

    answer = client.get(f"/api/workflow/status?run_id={run_id}", headers=READ)

    assert answer.status_code == 200
    run = answer.json
    assert run is not None
    assert (run["run_id"], run["status"], run["input"]) == (run_id, "succeeded", {"lead": 7})
    assert [node["node_id"] for node in run["nodes"]] == ["first", "last"]
    assert set(run["nodes"][0]) == {
        "node_id",
        "type",
        "status",
        "attempt",
        "max_attempts",
        "next_attempt_at",
        "attempts",
        "output",
        "error",
        "started_at",
        "finished_at",
        "duration_ms",
        "next",
        "then",
        "else",
    }
    assert run["finished_at"].endswith("Z")


def test_the_resource_path_returns_the_same_run_as_the_seed_path(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    run_id = finished_run(web_sessions, web_settings)

    by_resource = client.get(f"/api/runs/{run_id}", headers=READ)
    by_seed = client.get("/api/workflow/status", query_string={"run_id": run_id}, headers=READ)

    assert by_resource.status_code == 200
    assert by_resource.json == by_seed.json


def test_status_without_a_run_id_is_a_422_naming_it(client: FlaskClient) -> None:
    answer = client.get("/api/workflow/status", headers=READ)

    assert answer.status_code == 422
    assert answer.json is not None
    paths = [problem["path"] for problem in answer.json["error"]["details"]["problems"]]
    assert paths == ["run_id"]


@pytest.mark.parametrize("run_id", [str(uuid.uuid4()), "not-a-uuid"])
@pytest.mark.parametrize("path", ["/api/runs/{}", "/api/workflow/status?run_id={}"])
def test_an_unknown_run_is_a_404(client: FlaskClient, path: str, run_id: str) -> None:
    answer = client.get(path.format(run_id), headers=READ)

    assert answer.status_code == 404
    assert answer.json is not None
    assert answer.json["error"]["code"] == "not_found"


# --- the paged list --------------------------------------------------------------------------


def test_runs_are_listed_newest_first_across_pages(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    started = [start(web_sessions, workflow_id).run_id for _ in range(5)]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/runs", query_string=query, headers=READ).json
        assert page is not None
        pages += 1
        seen += [run["run_id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert pages == 3
    assert seen == list(reversed(started))


def test_a_listed_run_has_no_nodes(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    start(web_sessions, save(web_sessions, two_step()))

    page = client.get("/api/runs", headers=READ).json

    assert page is not None
    assert "nodes" not in page["runs"][0]
    assert page["next_cursor"] is None


def test_runs_with_the_same_created_at_are_neither_lost_nor_repeated_between_pages(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    started = {start(web_sessions, workflow_id).run_id for _ in range(4)}
    with web_sessions.begin() as session:
        for run in session.scalars(select(WorkflowRun)):
            run.created_at = run.created_at.replace(year=2030, microsecond=0, second=0)

    first = client.get("/api/runs?limit=3", headers=READ).json
    assert first is not None
    second = client.get(f"/api/runs?limit=3&cursor={first['next_cursor']}", headers=READ).json
    assert second is not None

    ids = [run["run_id"] for run in first["runs"] + second["runs"]]
    assert sorted(ids) == sorted(started)
    assert second["next_cursor"] is None


def test_runs_are_filtered_by_workflow_and_status(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
) -> None:
    done = finished_run(web_sessions, web_settings)
    other = save(web_sessions, two_step())
    queued = start(web_sessions, other).run_id

    by_workflow = client.get(f"/api/runs?workflow_id={other}", headers=READ).json
    by_status = client.get("/api/runs?status=succeeded", headers=READ).json

    assert by_workflow is not None and by_status is not None
    assert [run["run_id"] for run in by_workflow["runs"]] == [queued]
    assert [run["run_id"] for run in by_status["runs"]] == [done]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("cursor=not-a-cursor", "cursor"),
        ("cursor=WyJ4IiwieSJd", "cursor"),  # base64 of ["x","y"]: the shape, not the content
        ("status=exploded", "status"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=many", "limit"),
        ("color=red", "color"),
        ("since=yesterday", "since"),
        ("since=1700000000", "since"),  # a bare Unix time is not an ISO 8601 date-time
        ("until=2030-13-01T00:00:00Z", "until"),
        ("until=", "until"),
    ],
)
def test_an_invalid_list_query_is_a_422_naming_the_field(
    client: FlaskClient, query: str, field: str
) -> None:
    answer = client.get(f"/api/runs?{query}", headers=READ)

    assert answer.status_code == 422
    assert answer.json is not None
    paths = [problem["path"] for problem in answer.json["error"]["details"]["problems"]]
    assert paths == [field]


# --- cancel ----------------------------------------------------------------------------------


def test_cancel_answers_the_cancelled_run(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id

    answer = client.post(f"/api/runs/{run_id}/cancel", headers=ADMIN)

    assert answer.status_code == 200
    assert answer.json is not None
    assert answer.json["status"] == "cancelled"
    assert [node["status"] for node in answer.json["nodes"]] == ["cancelled", "not_started"]


def test_cancelling_a_finished_run_is_a_409(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    run_id = finished_run(web_sessions, web_settings)

    answer = client.post(f"/api/runs/{run_id}/cancel", headers=ADMIN)

    assert answer.status_code == 409
    assert statuses(client, run_id)["@run"] == "succeeded"


def test_cancelling_an_unknown_run_is_a_404(client: FlaskClient) -> None:
    assert client.post(f"/api/runs/{uuid.uuid4()}/cancel", headers=ADMIN).status_code == 404


def test_a_read_key_cannot_cancel(client: FlaskClient, web_sessions: sessionmaker[Session]) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id

    assert client.post(f"/api/runs/{run_id}/cancel", headers=READ).status_code == 403
    assert statuses(client, run_id)["@run"] == "queued"


# --- retry from the failed node --------------------------------------------------------------


def test_retry_from_failed_reopens_the_same_run_at_its_failed_node(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = failed_run(web_sessions, web_settings, http_peer)
    assert statuses(client, run_id) == {"fetch": "failed", "shape": "not_started", "@run": "failed"}

    answer = client.post(f"/api/runs/{run_id}/retry", json={"from": "failed"}, headers=ADMIN)

    assert answer.status_code == 202
    assert answer.headers["Location"] == f"/api/runs/{run_id}"
    run = answer.json
    assert run is not None
    assert (run["run_id"], run["status"], run["error"], run["finished_at"]) == (
        run_id,
        "queued",
        None,
        None,
    )
    fetch = run["nodes"][0]
    assert (fetch["status"], fetch["attempt"], fetch["error"]) == ("pending", 1, None)
    assert publisher.published == [NodeRef(run_id, "fetch")]


def test_retry_publishes_only_after_the_commit(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = failed_run(web_sessions, web_settings, http_peer)

    client.post(f"/api/runs/{run_id}/retry", headers=ADMIN)

    assert publisher.seen == ["pending"]


def test_a_resumed_run_finishes_without_repeating_what_succeeded(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = failed_run(web_sessions, web_settings, http_peer)
    client.post(f"/api/runs/{run_id}/retry", headers=ADMIN)

    drive(web_sessions, web_settings, publisher.published)

    run = client.get(f"/api/runs/{run_id}", headers=READ).json
    assert run is not None
    assert run["status"] == "succeeded"
    assert [(node["node_id"], node["attempt"]) for node in run["nodes"]] == [
        ("fetch", 2),
        ("shape", 1),
    ]
    assert run["nodes"][1]["output"] == {"got": True}


def test_a_resumed_node_gets_its_retry_policy_again_and_the_run_keeps_its_start(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
    publisher: CommitCheckingPublisher,
) -> None:
    route = f"/{unique_id('flaky')}"
    http_peer.reply(route, json={"ok": True}, fail_times=3)  # attempts 1 to 3 fail
    definition = fetch_then_shape(http_peer.url + route)
    definition["nodes"][0]["retry"] = {"max_attempts": 2, "backoff_s": 0}
    started = start(web_sessions, save(web_sessions, definition))
    drive(web_sessions, web_settings, started.to_publish)
    failed = client.get(f"/api/runs/{started.run_id}", headers=READ).json
    assert failed is not None and failed["status"] == "failed"
    assert failed["nodes"][0]["attempt"] == 2

    client.post(f"/api/runs/{started.run_id}/retry", json={"from": "failed"}, headers=ADMIN)
    drive(web_sessions, web_settings, publisher.published)

    run = client.get(f"/api/runs/{started.run_id}", headers=READ).json
    assert run is not None
    assert run["status"] == "succeeded"  # attempt 3 failed, and the policy allowed a 4th
    assert [(node["node_id"], node["attempt"]) for node in run["nodes"]] == [
        ("fetch", 4),
        ("shape", 1),
    ]
    assert run["started_at"] == failed["started_at"]


def test_retry_without_a_body_resumes_from_the_failed_node(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
) -> None:
    run_id = failed_run(web_sessions, web_settings, http_peer)

    answer = client.post(f"/api/runs/{run_id}/retry", headers=ADMIN)

    assert answer.status_code == 202
    assert answer.json is not None
    assert answer.json["run_id"] == run_id


def test_resuming_a_run_that_did_not_fail_is_a_409(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = finished_run(web_sessions, web_settings)

    answer = client.post(f"/api/runs/{run_id}/retry", json={"from": "failed"}, headers=ADMIN)

    assert answer.status_code == 409
    assert publisher.published == []


def test_resuming_on_the_current_version_is_a_422_naming_the_version(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
) -> None:
    run_id = failed_run(web_sessions, web_settings, http_peer)

    answer = client.post(
        f"/api/runs/{run_id}/retry", json={"from": "failed", "version": "current"}, headers=ADMIN
    )

    assert answer.status_code == 422
    assert answer.json is not None
    paths = [problem["path"] for problem in answer.json["error"]["details"]["problems"]]
    assert paths == ["version"]
    assert statuses(client, run_id)["@run"] == "failed"


def test_a_read_key_cannot_retry(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
) -> None:
    run_id = failed_run(web_sessions, web_settings, http_peer)

    assert client.post(f"/api/runs/{run_id}/retry", headers=READ).status_code == 403


# --- retry from the start --------------------------------------------------------------------


def test_retry_from_start_makes_a_new_run_with_the_same_input(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = finished_run(web_sessions, web_settings, {"lead": 42})

    answer = client.post(f"/api/runs/{run_id}/retry", json={"from": "start"}, headers=ADMIN)

    assert answer.status_code == 202
    new = answer.json
    assert new is not None
    assert new["run_id"] != run_id
    assert (new["status"], new["input"], new["workflow_version"]) == ("queued", {"lead": 42}, 1)
    assert answer.headers["Location"] == f"/api/runs/{new['run_id']}"
    assert publisher.published == [NodeRef(new["run_id"], "first", continuation=False)]
    assert publisher.seen == ["pending"]


def test_retry_from_start_keeps_the_original_version_by_default(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = finished_run(web_sessions, web_settings)
    workflow_id = workflow_of(client, run_id)
    save(web_sessions, two_step(workflow_id, value="two"))

    answer = client.post(f"/api/runs/{run_id}/retry", json={"from": "start"}, headers=ADMIN)

    assert answer.json is not None
    drive(web_sessions, web_settings, publisher.published)
    new = client.get(f"/api/runs/{answer.json['run_id']}", headers=READ).json
    assert new is not None
    assert new["workflow_version"] == 1
    assert new["nodes"][-1]["output"] == {"v": "one"}


def test_retry_from_start_on_the_current_version_runs_the_new_definition(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    publisher: CommitCheckingPublisher,
) -> None:
    run_id = finished_run(web_sessions, web_settings)
    save(web_sessions, two_step(workflow_of(client, run_id), value="two"))

    answer = client.post(
        f"/api/runs/{run_id}/retry", json={"from": "start", "version": "current"}, headers=ADMIN
    )

    assert answer.json is not None
    drive(web_sessions, web_settings, publisher.published)
    new = client.get(f"/api/runs/{answer.json['run_id']}", headers=READ).json
    assert new is not None
    assert new["workflow_version"] == 2
    assert new["nodes"][-1]["output"] == {"v": "two"}


def test_retry_from_start_of_a_run_under_way_is_a_409(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    run_id = start(web_sessions, save(web_sessions, two_step())).run_id

    answer = client.post(f"/api/runs/{run_id}/retry", json={"from": "start"}, headers=ADMIN)

    assert answer.status_code == 409


def test_retry_from_start_of_a_paused_workflow_is_a_409(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    run_id = finished_run(web_sessions, web_settings)
    workflow_id = workflow_of(client, run_id)
    client.patch(f"/api/workflows/{workflow_id}/status", json={"status": "paused"}, headers=ADMIN)

    answer = client.post(f"/api/runs/{run_id}/retry", json={"from": "start"}, headers=ADMIN)

    assert answer.status_code == 409
    assert answer.json is not None
    assert "paused" in answer.json["error"]["message"]
