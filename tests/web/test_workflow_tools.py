"""Workflows that are tools: the `tool` block saved and shown, its name unique among active
workflows (409 naming the other), and its input schema applied to execute and webhook inputs."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import Conflict, NotFound
from app.models import TriggerEvent, Workflow, WorkflowRun
from app.workflows import get_tool_workflow, list_tool_workflows, save_workflow
from app.workflows.store import set_workflow_status
from tests.statement_log import StatementLog
from tests.web.conftest import ADMIN, RecordingPublisher
from tests.web.factories import unique_id
from tests.web.test_triggers import SECRET, signed

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases

LEAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["email", "name"],
    "properties": {
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string"},
        "score": {"type": "integer", "minimum": 0},
    },
}
GOOD_INPUT = {"email": "ada@example.com", "name": "Ada", "score": 90}
#: A value that must never come back in an answer.
PRIVATE = "hunter2-private-value"


def tool_workflow(
    tool_name: str | None = "score_lead",
    *,
    workflow_id: str | None = None,
    schema: dict[str, Any] | None = None,
    trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "workflow_id": workflow_id or unique_id("tool"),
        "trigger": trigger or {"type": "webhook", "secrets": [SECRET]},
        "nodes": [{"id": "shape", "type": "transform", "params": {"values": {"ok": True}}}],
    }
    if tool_name is not None:
        definition["tool"] = {
            "name": tool_name,
            "description": "Score a sales lead from its contact details.",
            "input_schema": schema or LEAD_SCHEMA,
        }
    return definition


def create(client: FlaskClient, definition: dict[str, Any]) -> Any:
    return client.post("/api/workflows", json=definition, headers=ADMIN)


def set_status(client: FlaskClient, workflow_id: str, status: str) -> Any:
    return client.patch(
        f"/api/workflows/{workflow_id}/status", json={"status": status}, headers=ADMIN
    )


def runs(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(WorkflowRun)) or 0)


def tool_name_of(sessions: sessionmaker[Session], workflow_id: str) -> str | None:
    with sessions() as session:
        return session.scalar(select(Workflow.tool_name).where(Workflow.workflow_id == workflow_id))


# Saving


def test_a_tool_block_is_saved_and_shown_back(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    definition = tool_workflow()
    answer = create(client, definition)
    assert answer.status_code == 201
    assert answer.json["definition"]["tool"] == definition["tool"]
    shown = client.get(f"/api/workflows/{definition['workflow_id']}", headers=ADMIN)
    assert shown.json["definition"]["tool"] == definition["tool"]
    assert tool_name_of(web_sessions, definition["workflow_id"]) == "score_lead"


def test_the_input_schema_defaults_to_any_object(client: FlaskClient) -> None:
    definition = tool_workflow()
    del definition["tool"]["input_schema"]
    answer = create(client, definition)
    assert answer.status_code == 201
    assert answer.json["definition"]["tool"]["input_schema"] == {"type": "object"}


def test_a_bad_tool_block_is_one_422_with_every_problem(client: FlaskClient) -> None:
    definition = tool_workflow("ask_sales", schema={"type": "array", "items": {"type": 5}})
    definition["nodes"][0]["next"] = "nowhere"
    answer = create(client, definition)
    assert answer.status_code == 422
    assert answer.json["error"]["code"] == "invalid_workflow"
    assert {(p["code"], p["path"]) for p in answer.json["error"]["details"]["problems"]} == {
        ("unknown_reference", "nodes[0].next"),
        ("reserved_tool_name", "tool.name"),
        ("invalid_input_schema", "tool.input_schema.type"),
        ("invalid_input_schema", "tool.input_schema.items.type"),
    }


def test_a_new_version_without_a_tool_block_clears_the_tool_name(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    definition = tool_workflow()
    assert create(client, definition).status_code == 201
    plain = tool_workflow(None, workflow_id=definition["workflow_id"])
    put = client.put(f"/api/workflows/{definition['workflow_id']}", json=plain, headers=ADMIN)
    assert put.status_code == 200
    assert tool_name_of(web_sessions, definition["workflow_id"]) is None


# One active workflow per tool name


def test_creating_a_second_workflow_with_the_tool_name_is_409_naming_the_first(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    first = tool_workflow(workflow_id="other-wf")
    assert create(client, first).status_code == 201
    second = tool_workflow()
    answer = create(client, second)
    assert answer.status_code == 409
    assert answer.json["error"] == {
        "code": "conflict",
        "message": "tool name 'score_lead' is already used by workflow 'other-wf'",
        "details": None,
    }
    assert client.get(f"/api/workflows/{second['workflow_id']}", headers=ADMIN).status_code == 404


def test_a_put_taking_another_workflows_tool_name_is_409_and_stores_nothing(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    assert create(client, tool_workflow(workflow_id="other-wf")).status_code == 201
    mine = tool_workflow("enrich_lead")
    assert create(client, mine).status_code == 201
    renamed = tool_workflow(workflow_id=mine["workflow_id"])  # score_lead, taken
    answer = client.put(f"/api/workflows/{mine['workflow_id']}", json=renamed, headers=ADMIN)
    assert answer.status_code == 409
    assert "'other-wf'" in answer.json["error"]["message"]
    shown = client.get(f"/api/workflows/{mine['workflow_id']}", headers=ADMIN).json
    assert (shown["version"], shown["definition"]["tool"]["name"]) == (1, "enrich_lead")
    assert tool_name_of(web_sessions, mine["workflow_id"]) == "enrich_lead"


def test_a_workflow_keeps_its_own_tool_name_across_versions(client: FlaskClient) -> None:
    definition = tool_workflow()
    assert create(client, definition).status_code == 201
    put = client.put(f"/api/workflows/{definition['workflow_id']}", json=definition, headers=ADMIN)
    assert (put.status_code, put.json["version"]) == (200, 2)


def test_pausing_frees_the_name_and_activating_again_while_taken_is_409(
    client: FlaskClient,
) -> None:
    first = tool_workflow(workflow_id="other-wf")
    assert create(client, first).status_code == 201
    assert set_status(client, "other-wf", "paused").status_code == 200
    second = tool_workflow()
    assert create(client, second).status_code == 201  # the paused one serves no tool

    answer = set_status(client, "other-wf", "active")
    assert answer.status_code == 409
    assert answer.json["error"]["message"] == (
        f"tool name 'score_lead' is already used by workflow {second['workflow_id']!r}"
    )
    shown = client.get("/api/workflows/other-wf", headers=ADMIN).json
    assert shown["status"] == "paused"


def test_a_paused_workflow_may_take_a_name_in_use_but_not_activate_with_it(
    client: FlaskClient,
) -> None:
    assert create(client, tool_workflow(workflow_id="other-wf")).status_code == 201
    mine = tool_workflow("enrich_lead")
    assert create(client, mine).status_code == 201
    assert set_status(client, mine["workflow_id"], "paused").status_code == 200
    renamed = tool_workflow(workflow_id=mine["workflow_id"])
    put = client.put(f"/api/workflows/{mine['workflow_id']}", json=renamed, headers=ADMIN)
    assert put.status_code == 200
    assert set_status(client, mine["workflow_id"], "active").status_code == 409


# The data functions /mcp uses


def test_only_active_tool_workflows_are_listed_by_tool_name(
    web_sessions: sessionmaker[Session],
) -> None:
    with web_sessions.begin() as session:
        save_workflow(session, tool_workflow("zeta", workflow_id="wf-z"))
        save_workflow(session, tool_workflow("alpha", workflow_id="wf-a"))
        save_workflow(session, tool_workflow("paused_one", workflow_id="wf-p"))
        save_workflow(session, tool_workflow(None, workflow_id="wf-plain"))
        set_workflow_status(session, "wf-p", "paused")
        save_workflow(session, tool_workflow("alpha", workflow_id="wf-a"))  # version 2
    with web_sessions() as session:
        tools = list_tool_workflows(session)
    assert [(t.name, t.workflow_id, t.version) for t in tools] == [
        ("alpha", "wf-a", 2),
        ("zeta", "wf-z", 1),
    ]
    assert tools[0].description == "Score a sales lead from its contact details."
    assert tools[0].input_schema == LEAD_SCHEMA


def test_a_tool_is_found_by_name_while_its_workflow_is_active(
    web_sessions: sessionmaker[Session],
) -> None:
    with web_sessions.begin() as session:
        save_workflow(session, tool_workflow("score_lead", workflow_id="wf-s"))
    with web_sessions.begin() as session:
        found = get_tool_workflow(session, "score_lead")
        assert (found.workflow_id, found.version, found.name) == ("wf-s", 1, "score_lead")
        set_workflow_status(session, "wf-s", "paused")
    with web_sessions() as session, pytest.raises(NotFound):
        get_tool_workflow(session, "score_lead")


def test_save_refuses_a_taken_tool_name_with_a_conflict(
    web_sessions: sessionmaker[Session],
) -> None:
    with web_sessions.begin() as session:
        save_workflow(session, tool_workflow(workflow_id="other-wf"))
    with web_sessions.begin() as session, pytest.raises(Conflict, match="'other-wf'"):
        save_workflow(session, tool_workflow())


# Inputs: POST /api/workflow/execute


def execute(client: FlaskClient, body: Any, **headers: str) -> Any:
    return client.post("/api/workflow/execute", json=body, headers={**ADMIN, **headers})


@pytest.fixture
def lead_tool(client: FlaskClient) -> str:
    definition = tool_workflow()
    assert create(client, definition).status_code == 201
    return str(definition["workflow_id"])


@pytest.mark.parametrize("idempotency_key", [None, "order-1"])
def test_execute_with_bad_input_is_422_listing_every_field_and_writes_no_run(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    publisher: RecordingPublisher,
    lead_tool: str,
    idempotency_key: str | None,
) -> None:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    body = {"workflow_id": lead_tool, "input": {"email": PRIVATE, "score": PRIVATE}}
    answer = execute(client, body, **headers)
    assert answer.status_code == 422
    error = answer.json["error"]
    assert error["code"] == "validation_failed"
    assert [(p["code"], p["path"]) for p in error["details"]["problems"]] == [
        ("format", "input.email"),
        ("missing", "input.name"),
        ("type", "input.score"),
    ]
    assert error["message"] == "invalid fields: input.email, input.name, input.score"
    assert PRIVATE not in json.dumps(answer.json)
    assert runs(web_sessions) == 0 and publisher.published == []
    with web_sessions() as session:
        assert session.scalar(select(func.count()).select_from(TriggerEvent)) == 0


@pytest.mark.parametrize("idempotency_key", [None, "order-1"])
def test_execute_with_good_input_starts_the_run(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    lead_tool: str,
    idempotency_key: str | None,
) -> None:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    answer = execute(client, {"workflow_id": lead_tool, "input": GOOD_INPUT}, **headers)
    assert answer.status_code == 202
    with web_sessions() as session:
        assert session.scalars(select(WorkflowRun.input)).one() == GOOD_INPUT


def test_execute_input_that_is_not_an_object_is_one_problem_at_input(
    client: FlaskClient, lead_tool: str
) -> None:
    answer = execute(client, {"workflow_id": lead_tool, "input": [1, 2]})
    assert answer.status_code == 422
    assert answer.json["error"]["details"]["problems"] == [
        {"code": "type", "path": "input", "message": "must be of type object"}
    ]


def test_execute_of_a_paused_tool_workflow_is_409_whatever_the_input(
    client: FlaskClient, lead_tool: str
) -> None:
    assert set_status(client, lead_tool, "paused").status_code == 200
    assert execute(client, {"workflow_id": lead_tool, "input": {}}).status_code == 409


def test_a_workflow_without_a_tool_block_takes_any_input(client: FlaskClient) -> None:
    definition = tool_workflow(None)
    assert create(client, definition).status_code == 201
    body = {"workflow_id": definition["workflow_id"], "input": {"anything": [1, {"x": None}]}}
    assert execute(client, body).status_code == 202


# Inputs: signed webhooks


def fire(client: FlaskClient, workflow_id: str, payload: Any, message_id: str = "msg_1") -> Any:
    body = json.dumps(payload).encode()
    headers = signed(body, message_id=message_id)
    return client.post(f"/api/triggers/webhook/{workflow_id}", data=body, headers=headers)


def test_a_signed_webhook_with_a_bad_payload_is_422_and_starts_nothing(
    client: FlaskClient, web_sessions: sessionmaker[Session], lead_tool: str
) -> None:
    answer = fire(client, lead_tool, {"email": PRIVATE, "name": 3})
    assert answer.status_code == 422
    assert answer.json["error"]["code"] == "validation_failed"
    assert [(p["code"], p["path"]) for p in answer.json["error"]["details"]["problems"]] == [
        ("format", "email"),
        ("type", "name"),
    ]
    assert PRIVATE not in json.dumps(answer.json)
    assert runs(web_sessions) == 0


def test_a_signed_webhook_with_a_good_payload_is_202(
    client: FlaskClient, web_sessions: sessionmaker[Session], lead_tool: str
) -> None:
    assert fire(client, lead_tool, GOOD_INPUT).status_code == 202
    assert runs(web_sessions) == 1


def test_an_unsigned_webhook_learns_nothing_about_the_schema(
    client: FlaskClient, lead_tool: str
) -> None:
    body = json.dumps({"email": 1}).encode()
    headers = {**signed(body), "webhook-signature": "v1,AAAA"}
    answer = client.post(f"/api/triggers/webhook/{lead_tool}", data=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json["error"]["code"] == "invalid_signature"


# PostgreSQL: the partial unique index, and the webhook's hot path


def test_postgres_index_refuses_a_second_active_workflow_with_the_tool_name(
    pg_sessions: sessionmaker[Session],
) -> None:
    name = unique_id("tool").replace("-", "_")
    first, second = unique_id("first"), unique_id("second")
    with pg_sessions.begin() as session:
        save_workflow(session, tool_workflow(name, workflow_id=first))
        save_workflow(session, tool_workflow(None, workflow_id=second))
    # Past the save-time check, straight to the table: the index is what holds.
    clash = pytest.raises(IntegrityError, match="uq_workflows_active_tool_name")
    with clash, pg_sessions.begin() as session:
        session.execute(
            update(Workflow).where(Workflow.workflow_id == second).values(tool_name=name)
        )
    with pg_sessions.begin() as session:  # a paused workflow may hold it
        session.execute(
            update(Workflow)
            .where(Workflow.workflow_id == second)
            .values(tool_name=name, status="paused")
        )


def test_postgres_concurrent_saves_of_one_tool_name_give_one_winner_and_a_409(
    pg_sessions: sessionmaker[Session],
) -> None:
    """The loser's check ran before the winner committed; the index and the savepoint turn
    its write into the same Conflict naming the winner."""
    name = unique_id("tool").replace("-", "_")
    winner, loser = unique_id("winner"), unique_id("loser")
    outcome: list[BaseException] = []
    with pg_sessions.begin() as session:
        save_workflow(session, tool_workflow(name, workflow_id=winner))  # not committed yet

        def save_the_loser() -> None:
            try:
                with pg_sessions.begin() as other:
                    save_workflow(other, tool_workflow(name, workflow_id=loser))
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=save_the_loser)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # blocked on the winner's index entry
    thread.join(timeout=10)
    assert [type(exc) for exc in outcome] == [Conflict]
    assert str(outcome[0]) == f"tool name {name!r} is already used by workflow {winner!r}"
    with pg_sessions() as session:
        assert session.get(Workflow, loser) is None


def test_postgres_a_tool_webhook_adds_no_statement_to_the_hot_path(
    pg_client: FlaskClient, pg_engine: Engine, pg_sessions: sessionmaker[Session]
) -> None:
    workflow_id = unique_id("lead")
    with pg_sessions.begin() as session:
        save_workflow(
            session, tool_workflow(unique_id("t").replace("-", "_"), workflow_id=workflow_id)
        )
    log = StatementLog(pg_engine)
    assert fire(pg_client, workflow_id, GOOD_INPUT, "msg_1").status_code == 202
    assert log.take() == ["SELECT", "SELECT", "WITH"]  # workflow and definition, then the write
    assert fire(pg_client, workflow_id, GOOD_INPUT, "msg_2").status_code == 202
    assert log.take() == ["WITH"]
    assert fire(pg_client, workflow_id, {"email": 1}, "msg_3").status_code == 422
    # The remembered copy's schema refused it; the current one is read to decide afresh, and
    # before refusing, the key is looked up (a known delivery is answered first, issue 14). The
    # refusal is then logged on its own (the delivery log), pruning older ones on the first.
    assert log.take() == ["SELECT", "SELECT", "INSERT", "DELETE"]


def test_postgres_a_schema_relaxed_elsewhere_is_applied_at_once(
    pg_client: FlaskClient, pg_sessions: sessionmaker[Session]
) -> None:
    """The process's copy names version 1; version 2 (saved by another process) accepts any
    object, so the payload version 1 refuses is accepted, not answered 422."""
    workflow_id, name = unique_id("lead"), unique_id("t").replace("-", "_")
    with pg_sessions.begin() as session:
        save_workflow(session, tool_workflow(name, workflow_id=workflow_id))
    assert fire(pg_client, workflow_id, GOOD_INPUT, "msg_1").status_code == 202
    with pg_sessions.begin() as session:
        save_workflow(
            session, tool_workflow(name, workflow_id=workflow_id, schema={"type": "object"})
        )
    assert fire(pg_client, workflow_id, {"anything": True}, "msg_2").status_code == 202
    with pg_sessions() as session:
        versions = session.scalars(
            select(WorkflowRun.workflow_version)
            .where(WorkflowRun.workflow_id == workflow_id)
            .order_by(WorkflowRun.created_at)
        ).all()
    assert versions == [1, 2]


def test_postgres_lists_tool_workflows_with_one_query_for_their_definitions(
    pg_engine: Engine, pg_sessions: sessionmaker[Session]
) -> None:
    mine = {unique_id("bulk") for _ in range(5)}
    with pg_sessions.begin() as session:
        for workflow_id in mine:
            save_workflow(
                session, tool_workflow(workflow_id.replace("-", "_"), workflow_id=workflow_id)
            )
    log = StatementLog(pg_engine)
    with pg_sessions() as session:
        listed = {tool.workflow_id for tool in list_tool_workflows(session)}
    assert mine <= listed  # with the active tools earlier tests left behind
    assert log.take() == ["SELECT", "SELECT"]  # the rows, then the new definitions at once
    with pg_sessions() as session:
        list_tool_workflows(session)
    assert log.take() == ["SELECT"]  # definitions are parsed once per process


def test_postgres_activating_into_a_concurrently_claimed_name_is_409(
    pg_sessions: sessionmaker[Session],
) -> None:
    """An update, not an insert, loses the race: the same Conflict naming the winner."""
    name = unique_id("tool").replace("-", "_")
    winner, paused = unique_id("winner"), unique_id("paused")
    with pg_sessions.begin() as session:
        save_workflow(session, tool_workflow(name, workflow_id=paused))
        set_workflow_status(session, paused, "paused")
    outcome: list[BaseException] = []
    with pg_sessions.begin() as session:
        save_workflow(session, tool_workflow(name, workflow_id=winner))  # not committed yet

        def activate() -> None:
            try:
                with pg_sessions.begin() as other:
                    set_workflow_status(other, paused, "active")
            except BaseException as exc:  # handed to the test thread
                outcome.append(exc)

        thread = threading.Thread(target=activate)
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive()  # blocked on the winner's index entry
    thread.join(timeout=10)
    assert [str(exc) for exc in outcome] == [
        f"tool name {name!r} is already used by workflow {winner!r}"
    ]
    with pg_sessions() as session:
        assert session.get(Workflow, paused).status == "paused"
