"""Bad input is a 4xx with the error body, decided before the database, and nothing is written
(issue 13, section 1): JSON that is not JSON (NaN, 1e999, deeper than 32, not UTF-8), text that
PostgreSQL cannot store (a NUL, a lone surrogate) in a body, a path or a query, and a chunked
body past the limit. The NUL cases run on PostgreSQL: SQLite stores a NUL happily."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from app.config import Settings
from app.models import (
    AgentMCP,
    TriggerEvent,
    Workflow,
    WorkflowRun,
    make_engine,
    make_session_factory,
)
from app.web import create_app
from app.web.api import ENDPOINTS
from app.web.context import WebContext
from app.web.errors import ApiError
from app.web.json_body import MAX_JSON_DEPTH, parse_json_body, unstorable_text_problems
from app.workflows import save_workflow
from tests.statement_log import StatementLog
from tests.web.conftest import ADMIN, ADMIN_KEY, ENCRYPTION_KEY, RecordingPublisher
from tests.web.factories import unique_id
from tests.web.test_errors import assert_error_format
from tests.web.test_triggers import SECRET, definition, signed


@pytest.fixture
def pg_admin(migrated_postgres: str, pg_sessions: sessionmaker[Session]) -> FlaskClient:
    """The app on the real PostgreSQL with an admin key: the NUL cases reach PostgreSQL here."""
    settings = Settings(
        DATABASE_URL=migrated_postgres,
        CELERY_BROKER_URL="memory://",
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY}",
        DUALMCP_MAX_BODY_BYTES=64 * 1024,
        DUALMCP_ENCRYPTION_KEY=ENCRYPTION_KEY,
    )
    context = WebContext(settings=settings, sessions=pg_sessions, publish=RecordingPublisher())
    return create_app({"TESTING": True}, context=context).test_client()


@pytest.fixture
def statements(pg_engine: Engine) -> StatementLog:
    return StatementLog(pg_engine)


@pytest.fixture
def webhook_workflow(pg_sessions: sessionmaker[Session]) -> str:
    workflow_id = unique_id("bad-input")
    with pg_sessions.begin() as session:
        save_workflow(session, definition(workflow_id, {"type": "webhook", "secrets": [SECRET]}))
    return workflow_id


def runs_of(sessions: sessionmaker[Session], workflow_id: str) -> int:
    with sessions() as session:
        query = select(func.count()).where(WorkflowRun.workflow_id == workflow_id)
        return int(session.scalar(query) or 0)


def events_of(sessions: sessionmaker[Session], workflow_id: str) -> int:
    with sessions() as session:
        query = select(func.count()).where(TriggerEvent.workflow_id == workflow_id)
        return int(session.scalar(query) or 0)


def post_json(client: FlaskClient, path: str, text: str | bytes) -> Any:
    return client.post(path, data=text, content_type="application/json", headers=ADMIN)


def execute_body(workflow_id: str, input_json: str) -> str:
    return f'{{"workflow_id": "{workflow_id}", "input": {input_json}}}'


# Not JSON: NaN, Infinity and their overflowing spellings (400 malformed_json)

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1.5E+400"]


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_in_a_run_input_is_a_400_naming_its_path(
    pg_admin: FlaskClient,
    webhook_workflow: str,
    pg_sessions: sessionmaker[Session],
    statements: StatementLog,
    number: str,
) -> None:
    answer = post_json(
        pg_admin, "/api/workflow/execute", execute_body(webhook_workflow, f'{{"v": [{number}]}}')
    )

    error = assert_error_format(answer, 400, "malformed_json")
    assert error["message"].startswith(f"{number} at input.v.0 is not a finite JSON number")
    assert statements.take() == []
    assert runs_of(pg_sessions, webhook_workflow) == 0


@pytest.mark.parametrize("number", ["NaN", "1e999"])
def test_a_non_finite_number_in_a_signed_webhook_body_is_a_400_and_starts_nothing(
    pg_admin: FlaskClient,
    webhook_workflow: str,
    pg_sessions: sessionmaker[Session],
    number: str,
) -> None:
    body = f'{{"lead": {{"score": {number}}}}}'.encode()

    answer = pg_admin.post(
        f"/api/triggers/webhook/{webhook_workflow}", data=body, headers=signed(body)
    )

    assert_error_format(answer, 400, "malformed_json")
    assert "lead.score" in answer.json["error"]["message"]
    assert runs_of(pg_sessions, webhook_workflow) == 0
    assert events_of(pg_sessions, webhook_workflow) == 0


def test_nan_in_a_definition_is_refused_not_saved_as_null(
    pg_admin: FlaskClient, pg_sessions: sessionmaker[Session]
) -> None:
    workflow_id = unique_id("nan")
    text = json.dumps(definition(workflow_id, {"type": "manual"})).replace("true", "NaN")

    answer = post_json(pg_admin, "/api/workflows", text)

    assert_error_format(answer, 400, "malformed_json")
    assert "nodes.0.params.values.ok" in answer.json["error"]["message"]
    with pg_sessions() as session:
        assert session.get(Workflow, workflow_id) is None


def test_finite_numbers_large_and_small_are_accepted() -> None:
    assert parse_json_body(b'{"a": 1e308, "b": -1e-320, "c": 123456789012345678901234567890}') == {
        "a": 1e308,
        "b": -1e-320,
        "c": 123456789012345678901234567890,
    }


def test_an_integer_too_long_to_read_is_a_400_not_a_500(client: FlaskClient) -> None:
    answer = post_json(client, "/api/agents", '{"agent_name": "x", "n": ' + "9" * 5000 + "}")

    error = assert_error_format(answer, 400, "malformed_json")
    assert "more than 4300 digits" in error["message"]


# Nesting: 32 levels at most, whatever the shape (400 malformed_json)


@pytest.mark.parametrize(("levels", "refused"), [(MAX_JSON_DEPTH, False), (33, True)])
def test_empty_arrays_nested_past_32_levels_are_a_400(
    client: FlaskClient, levels: int, refused: bool
) -> None:
    answer = post_json(client, "/api/agents", "[" * levels + "]" * levels)

    if refused:
        error = assert_error_format(answer, 400, "malformed_json")
        assert "nested deeper than 32 levels" in error["message"]
    else:  # the parser took it; the model refuses a list where it wants an object
        assert_error_format(answer, 422, "validation_failed")


@pytest.mark.parametrize(
    ("levels", "refused"), [(MAX_JSON_DEPTH, False), (MAX_JSON_DEPTH + 1, True)]
)
@pytest.mark.parametrize("innermost", ["[]", "{}", "1", '"x"'])
def test_the_parser_counts_containers_whatever_is_innermost(
    levels: int, refused: bool, innermost: str
) -> None:
    containers = levels - (1 if innermost in ("[]", "{}") else 0)
    text = '{"k": ' * (containers // 2) + "[" * (containers - containers // 2)
    text += innermost + "]" * (containers - containers // 2) + "}" * (containers // 2)

    if refused:
        with pytest.raises(ApiError) as refusal:
            parse_json_body(text.encode())
        assert (refusal.value.status, refusal.value.code) == (400, "malformed_json")
    else:
        parse_json_body(text.encode())


def test_nesting_far_past_the_limit_is_a_400_not_a_crash(client: FlaskClient) -> None:
    answer = post_json(client, "/api/agents", "[" * 30_000 + "]" * 30_000)

    assert_error_format(answer, 400, "malformed_json")


# Not UTF-8 (400 malformed_json)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"agent_name": "\xff"}',
        b'{"agent_name": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 (CESU-8)
        b'{"agent_name": "caf\xe9"}',  # Latin-1
        '{"agent_name": "x"}'.encode("utf-16"),
    ],
)
def test_a_body_that_is_not_utf8_is_a_400_saying_where(client: FlaskClient, raw: bytes) -> None:
    error = assert_error_format(post_json(client, "/api/agents", raw), 400, "malformed_json")

    assert "not valid UTF-8" in error["message"] and "offset" in error["message"]


def test_a_utf8_byte_order_mark_is_ignored(client: FlaskClient) -> None:
    answer = post_json(client, "/api/agents", b'\xef\xbb\xbf{"agent_name": "BOM"}')

    assert answer.status_code == 201, answer.json


# Text PostgreSQL cannot store (422 invalid_text, each problem with its path)


def assert_invalid_text(answer: Any, *problems: tuple[str, str]) -> None:
    error = assert_error_format(answer, 422, "invalid_text")
    found = [(problem["path"], problem["code"]) for problem in error["details"]["problems"]]
    assert found == list(problems)
    assert all(
        set(problem) == {"code", "path", "message"} for problem in error["details"]["problems"]
    )


def test_a_nul_in_a_run_input_is_a_422_naming_the_field_and_starts_nothing(
    pg_admin: FlaskClient,
    webhook_workflow: str,
    pg_sessions: sessionmaker[Session],
    statements: StatementLog,
) -> None:
    text = execute_body(webhook_workflow, r'{"v": "a\u0000b", "w": ["ok", "\ud800"]}')

    answer = post_json(pg_admin, "/api/workflow/execute", text)

    assert_invalid_text(answer, ("input.v", "nul_character"), ("input.w.1", "lone_surrogate"))
    assert statements.take() == []
    assert runs_of(pg_sessions, webhook_workflow) == 0


def test_a_nul_in_a_key_is_named_with_the_key_escaped(
    pg_admin: FlaskClient, webhook_workflow: str, pg_sessions: sessionmaker[Session]
) -> None:
    text = execute_body(webhook_workflow, r'{"a\u0000b": 1}')

    answer = post_json(pg_admin, "/api/workflow/execute", text)

    assert_invalid_text(answer, ("input.a\\u0000b", "nul_character"))
    assert "key" in answer.json["error"]["details"]["problems"][0]["message"]
    assert runs_of(pg_sessions, webhook_workflow) == 0


@pytest.mark.parametrize("bad", [r"a\u0000b", r"\udfff"])
def test_unstorable_text_in_a_signed_webhook_body_is_a_422_and_starts_nothing(
    pg_admin: FlaskClient,
    webhook_workflow: str,
    pg_sessions: sessionmaker[Session],
    bad: str,
) -> None:
    body = f'{{"v": "{bad}"}}'.encode()

    answer = pg_admin.post(
        f"/api/triggers/webhook/{webhook_workflow}", data=body, headers=signed(body)
    )

    error = assert_error_format(answer, 422, "invalid_text")
    assert [problem["path"] for problem in error["details"]["problems"]] == ["v"]
    assert runs_of(pg_sessions, webhook_workflow) == 0
    assert events_of(pg_sessions, webhook_workflow) == 0


def test_a_nul_in_an_agent_name_is_a_422_and_creates_no_agent(
    pg_admin: FlaskClient, pg_sessions: sessionmaker[Session], statements: StatementLog
) -> None:
    name = unique_id("nul-agent")

    answer = post_json(pg_admin, "/api/agents", f'{{"agent_name": "{name}\\u0000"}}')

    assert_invalid_text(answer, ("agent_name", "nul_character"))
    assert statements.take() == []
    with pg_sessions() as session:
        query = select(func.count()).where(AgentMCP.agent_name.startswith(name))
        assert session.scalar(query) == 0


def test_a_nul_in_a_workflow_name_is_a_422_and_saves_nothing(
    pg_admin: FlaskClient, pg_sessions: sessionmaker[Session], statements: StatementLog
) -> None:
    workflow_id = unique_id("nul-name")
    text = json.dumps({**definition(workflow_id, {"type": "manual"}), "name": "a\x00b"})

    answer = post_json(pg_admin, "/api/workflows", text)

    assert_invalid_text(answer, ("name", "nul_character"))
    assert statements.take() == []
    with pg_sessions() as session:
        assert session.get(Workflow, workflow_id) is None


def test_a_nul_in_an_agent_patch_is_a_422(pg_admin: FlaskClient) -> None:
    created = pg_admin.post("/api/agents", json={"agent_name": "patched"}, headers=ADMIN)
    agent_id = created.json["agent_id"]

    answer = pg_admin.patch(
        f"/api/agents/{agent_id}",
        data='{"personality_traits": {"tone": "\\u0000"}}',
        content_type="application/json",
        headers=ADMIN,
    )

    assert_invalid_text(answer, ("personality_traits.tone", "nul_character"))
    assert pg_admin.get(f"/api/agents/{agent_id}", headers=ADMIN).json["personality_traits"] == {}


def test_malformed_json_wins_over_unstorable_text() -> None:
    with pytest.raises(ApiError) as refusal:
        parse_json_body(rb'{"a": "\u0000", "b": NaN}')

    assert refusal.value.code == "malformed_json"


def test_escaped_text_that_is_storable_is_accepted() -> None:
    raw = rb'{"emoji": "\ud83d\ude00", "slash": "\\u0000", "tab": "\t"}'

    assert parse_json_body(raw) == {"emoji": "\U0001f600", "slash": "\\u0000", "tab": "\t"}


def test_unstorable_text_problems_walks_any_payload_under_a_prefix() -> None:
    form = {"name": "ok", "tags": ["fine", "bad\x00"], "a\ud800": "x", "n": 1}

    problems = unstorable_text_problems(form, "payload")

    assert [(problem["path"], problem["code"]) for problem in problems] == [
        ("payload.tags.1", "nul_character"),
        ("payload.a\\ud800", "lone_surrogate"),
    ]
    assert unstorable_text_problems("plain\x00text") == [
        {
            "code": "nul_character",
            "path": "",
            "message": "the text holds a NUL character (\\u0000), which cannot be stored",
        }
    ]


# Paths and queries: a 404 or a 422, decided without a database read


def _filled(rule: str, value: str) -> str:
    return re.sub(r"<[^<>]+>", value, rule)


def test_a_nul_in_any_path_id_is_answered_without_the_database(
    pg_admin: FlaskClient, statements: StatementLog
) -> None:
    routes = sorted({(e.method, e.rule) for e in ENDPOINTS if "<" in e.rule})  # app built: all
    expected, answered = {}, {}
    for method, rule in routes:
        answer = pg_admin.open(_filled(rule, "a%00b"), method=method, json={}, headers=ADMIN)
        # A PUT creates what its only argument names: that one is a field of the request (422).
        creates = method == "PUT" and rule.count("<") == 1
        expected[f"{method} {rule}"] = (422, "invalid_text") if creates else (404, "not_found")
        answered[f"{method} {rule}"] = (answer.status_code, answer.json["error"]["code"])

    assert answered == expected
    assert len(routes) >= 20
    assert statements.take() == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/workflows/a%20b",
        "/api/workflows/a%01b",
        "/api/workflows/" + "w" * 129,
        "/api/workflows/%ED%A0%80",  # a surrogate's UTF-8: read as U+FFFD, not a stored id
        "/api/agents/-starts-with-a-dash",
        "/api/agents/a%0Ab/memory?session_id=s",
        "/api/workflows/ok/credentials/a%7Eb",
    ],
)
def test_an_id_that_cannot_match_its_pattern_is_a_404_without_the_database(
    pg_admin: FlaskClient, statements: StatementLog, path: str
) -> None:
    method = "DELETE" if "/credentials/" in path else "GET"

    answer = pg_admin.open(path, method=method, headers=ADMIN)

    assert_error_format(answer, 404, "not_found")
    assert statements.take() == []


def test_a_nul_in_a_webhook_path_is_a_404_and_records_nothing(
    pg_admin: FlaskClient, statements: StatementLog
) -> None:
    body = b'{"v": 1}'

    answer = pg_admin.post("/api/triggers/webhook/a%00b", data=body, headers=signed(body))

    assert_error_format(answer, 404, "not_found")
    assert statements.take() == []


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/runs?workflow_id=a%00b", "workflow_id"),
        ("/api/workflow/status?run_id=a%00b", "run_id"),
        ("/api/outbox?run_id=a%00b", "run_id"),
        ("/api/agents/some-agent/memory?session_id=a%00b", "session_id"),
    ],
)
def test_a_nul_in_a_query_value_is_a_422_naming_it_without_the_database(
    pg_admin: FlaskClient, statements: StatementLog, path: str, field: str
) -> None:
    answer = pg_admin.get(path, headers=ADMIN)

    assert_invalid_text(answer, (field, "nul_character"))
    assert statements.take() == []


def test_ids_that_match_their_pattern_still_reach_the_store(
    pg_admin: FlaskClient, webhook_workflow: str
) -> None:
    assert pg_admin.get(f"/api/workflows/{webhook_workflow}", headers=ADMIN).status_code == 200
    assert_error_format(pg_admin.get("/api/workflows/not.there_1-2", headers=ADMIN), 404)


def test_an_id_past_its_pattern_is_a_404_even_when_the_database_is_down(tmp_path: Path) -> None:
    settings = Settings(
        DATABASE_URL=f"sqlite:///{tmp_path / 'missing' / 'dir' / 'web.db'}",
        DUALMCP_API_KEYS=f"admin:{ADMIN_KEY}",
        CELERY_BROKER_URL="memory://",
    )
    sessions = make_session_factory(make_engine(settings.database_url))
    context = WebContext(settings=settings, sessions=sessions, publish=RecordingPublisher())
    client = create_app({"TESTING": True}, context=context).test_client()

    assert_error_format(client.get("/api/workflows/a%00b", headers=ADMIN), 404, "not_found")
    assert_error_format(client.get("/api/workflows/fine", headers=ADMIN), 503, "unavailable")


# A chunked body past the limit (413), not cut at it


def chunked_post(
    app: Flask, path: str, stream: io.BytesIO, headers: dict[str, str] | None = None
) -> Any:
    """A body with no Content-Length, ended by the server: what gunicorn hands on for
    `Transfer-Encoding: chunked` (the test client would count a stream and say its length)."""
    headers = headers or {**ADMIN, "Content-Type": "application/json"}
    builder = EnvironBuilder(
        path=path,
        method="POST",
        input_stream=stream,
        headers={**headers, "Transfer-Encoding": "chunked"},
    )
    environ = builder.get_environ()
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True
    return app.test_client().open(Request(environ))


def padded_agent(size: int) -> io.BytesIO:
    """A valid agent whose JSON is exactly `size` bytes: its first `limit` bytes are not JSON,
    so a body cut at the limit could only be refused as malformed, never answered 201."""
    start, end = b'{"agent_name": "padded"', b"}"
    return io.BytesIO(start + b" " * (size - len(start) - len(end)) + end)


@pytest.fixture
def limit(web_settings: Settings) -> int:
    return web_settings.max_body_bytes


def test_a_chunked_body_past_the_limit_is_a_413(app: Flask, limit: int) -> None:
    answer = chunked_post(app, "/api/agents", padded_agent(limit + 1))

    assert_error_format(answer, 413)


def test_a_chunked_body_is_not_cut_at_the_limit_and_processed(
    app: Flask, limit: int, web_sessions: sessionmaker[Session]
) -> None:
    whole_agent_then_more = io.BytesIO(padded_agent(limit).getvalue() + b"  ")

    answer = chunked_post(app, "/api/agents", whole_agent_then_more)

    assert_error_format(answer, 413)
    with web_sessions() as session:
        assert session.scalar(select(func.count()).select_from(AgentMCP)) == 0


def test_a_chunked_body_at_the_limit_is_read_whole(app: Flask, limit: int) -> None:
    answer = chunked_post(app, "/api/agents", padded_agent(limit))

    assert answer.status_code == 201, answer.json


def test_a_chunked_body_is_read_at_most_one_byte_past_the_limit(app: Flask, limit: int) -> None:
    stream = padded_agent(10 * limit)

    assert_error_format(chunked_post(app, "/api/agents", stream), 413)
    assert stream.tell() == limit + 1


def test_a_chunked_webhook_body_past_the_limit_is_a_413_not_a_run(
    app: Flask, limit: int, web_sessions: sessionmaker[Session]
) -> None:
    with web_sessions.begin() as session:
        save_workflow(session, definition("chunked", {"type": "webhook", "secrets": [SECRET]}))
    body = b'{"v": "' + b"x" * limit + b'"}'

    answer = chunked_post(app, "/api/triggers/webhook/chunked", io.BytesIO(body), signed(body))

    assert_error_format(answer, 413)
    assert runs_of(web_sessions, "chunked") == 0


# The error table of docs/api.md lists every code


def test_the_documented_error_table_lists_every_code_the_api_answers() -> None:
    repo = Path(__file__).resolve().parents[2]
    raised = re.compile(r'(?:ApiError|InputInvalid|error_response|_error)\(\s*(\d{3}),\s*"(\w+)"')
    answered = {
        (int(status), code)
        for source in (repo / "app").rglob("*.py")
        for status, code in raised.findall(source.read_text())
    }
    documented = (repo / "docs" / "api.md").read_text()
    listed = {(int(s), c) for s, c in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", documented, re.M)}

    assert len(answered) >= 20
    assert answered - listed == set()
    assert {(405, "method_not_allowed"), (413, "request_entity_too_large")} <= listed  # werkzeug's
