"""The pages through Flask's test client: public shells without data, fragments behind the
API key, every node of a run shown, buttons for admin keys only, secrets masked."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import AgentMessage, utcnow
from tests.http_peer import HttpPeer
from tests.web.conftest import ADMIN, READ, web_test_settings
from tests.web.factories import drive, fetch_then_shape, save, start, two_step, unique_id

SECRET = "s3cret-value-never-shown"


@pytest.fixture
def web_settings(database_url: str) -> Settings:
    """The web tests' settings, allowed to fetch from the local HTTP peer."""
    return web_test_settings(database_url, DUALMCP_HTTP_ALLOWLIST="127.0.0.1")


def _statuses(html: str, attribute: str) -> dict[str, str]:
    pattern = rf'{attribute}="([^"]+)" data-status="([^"]+)"'
    return dict(re.findall(pattern, html))


def test_the_root_sends_a_browser_to_the_pages(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/ui/"


def test_a_shell_is_public_holds_no_data_and_allows_only_our_scripts(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    run_id = start(web_sessions, workflow_id).run_id
    response = client.get(f"/ui/runs/{run_id}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f'hx-get="/ui/fragments/runs/{run_id}"' in html
    assert workflow_id not in html
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy
    assert not re.search(r"<script(?![^>]*\ssrc=)", html), "an inline script"
    assert " style=" not in html and "<style" not in html


def test_a_fragment_needs_a_valid_key(client: FlaskClient) -> None:
    assert client.get("/ui/fragments/runs").status_code == 401
    bad = {"Authorization": "Bearer not-a-key"}
    assert client.get("/ui/fragments/runs", headers=bad).status_code == 401
    whoami = client.get("/ui/fragments/whoami", headers=READ)
    assert whoami.status_code == 200 and 'data-scope="read"' in whoami.get_data(as_text=True)
    assert whoami.headers["Cache-Control"] == "no-store"


@pytest.mark.both_databases
def test_the_runs_list_refreshes_only_while_a_shown_run_is_unfinished(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    workflow_id = save(web_sessions, two_step())
    older = start(web_sessions, workflow_id)
    drive(web_sessions, web_settings, older.to_publish)
    newer = start(web_sessions, workflow_id)
    html = client.get("/ui/fragments/runs", headers=READ).get_data(as_text=True)
    rows = re.findall(r'data-run-id="([^"]+)" data-status="([^"]+)"', html)
    assert rows == [(newer.run_id, "queued"), (older.run_id, "succeeded")]
    assert 'hx-trigger="every 2s"' in html
    drive(web_sessions, web_settings, newer.to_publish)
    html = client.get("/ui/fragments/runs", headers=READ).get_data(as_text=True)
    assert "hx-trigger" not in html
    queued = client.get("/ui/fragments/runs?status=queued&since=1h", headers=READ)
    assert "data-run-id" not in queued.get_data(as_text=True)


@pytest.mark.both_databases
def test_the_runs_list_pages_with_the_cursor(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    run_ids = {start(web_sessions, workflow_id).run_id for _ in range(27)}
    html = client.get(f"/ui/fragments/runs?workflow_id={workflow_id}", headers=READ).get_data(
        as_text=True
    )
    first = re.findall(r'data-run-id="([^"]+)"', html)
    cursor = re.search(r'rel="next" href="/ui/\?([^"]+)"', html)
    assert len(first) == 25 and cursor is not None
    query = cursor.group(1).replace("&amp;", "&")
    html = client.get(f"/ui/fragments/runs?{query}", headers=READ).get_data(as_text=True)
    second = re.findall(r'data-run-id="([^"]+)"', html)
    assert len(second) == 2 and set(first) | set(second) == run_ids
    assert 'rel="next"' not in html


def test_a_bad_filter_is_refused(client: FlaskClient) -> None:
    for query in ("status=done", "since=forever", "cursor=nonsense", "workflow_id=a%00b"):
        response = client.get(f"/ui/fragments/runs?{query}", headers=READ)
        assert response.status_code in (404, 422), query


@pytest.mark.both_databases
def test_a_run_shows_every_node_of_its_definition_and_the_path_taken(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    workflow_id = save(web_sessions, two_step())
    started = start(web_sessions, workflow_id)
    html = client.get(f"/ui/fragments/runs/{started.run_id}", headers=READ).get_data(as_text=True)
    assert _statuses(html, "data-node-id") == {"first": "pending", "last": "not_started"}
    assert _statuses(html, "data-graph-node") == {"first": "pending", "last": "not_started"}
    assert 'hx-trigger="every 2s"' in html
    drive(web_sessions, web_settings, started.to_publish)
    html = client.get(f"/ui/fragments/runs/{started.run_id}", headers=READ).get_data(as_text=True)
    assert _statuses(html, "data-node-id") == {"first": "succeeded", "last": "succeeded"}
    assert 'class="edge taken"' in html
    assert 'data-run-status="succeeded"' in html and "hx-trigger" not in html


def test_an_unknown_run_is_a_404(client: FlaskClient) -> None:
    for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        assert client.get(f"/ui/fragments/runs/{run_id}", headers=READ).status_code == 404


def test_only_an_admin_key_gets_the_retry_buttons(
    client: FlaskClient,
    web_sessions: sessionmaker[Session],
    web_settings: Settings,
    http_peer: HttpPeer,
) -> None:
    route = f"/{unique_id('broken')}"
    http_peer.reply(route, status=500)
    workflow_id = save(web_sessions, fetch_then_shape(http_peer.url + route))
    started = start(web_sessions, workflow_id)
    drive(web_sessions, web_settings, started.to_publish)
    url = f"/ui/fragments/runs/{started.run_id}"
    as_admin = client.get(url, headers=ADMIN).get_data(as_text=True)
    as_reader = client.get(url, headers=READ).get_data(as_text=True)
    assert 'data-run-status="failed"' in as_admin and 'data-run-status="failed"' in as_reader
    assert f'data-post="/api/runs/{started.run_id}/retry"' in as_admin
    assert "data-post" not in as_reader
    assert _statuses(as_reader, "data-node-id") == {"fetch": "failed", "shape": "not_started"}


def test_secrets_are_masked_for_every_key(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    definition = two_step()
    definition["nodes"][0]["params"]["values"] = {"v": "one", "api_token": SECRET}
    definition["trigger"] = {"type": "webhook", "scheme": "github", "secrets": [SECRET]}
    workflow_id = save(web_sessions, definition)
    started = start(web_sessions, workflow_id, {"password": SECRET})
    drive(web_sessions, web_settings, started.to_publish)
    for url in (f"/ui/fragments/runs/{started.run_id}", f"/ui/fragments/workflows/{workflow_id}"):
        html = client.get(url, headers=ADMIN).get_data(as_text=True)
        assert "***" in html
        assert SECRET not in html, url


def test_workflows_show_status_trigger_versions_and_last_runs(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    workflow_id = save(web_sessions, two_step())
    save(web_sessions, two_step(workflow_id, value="two"))
    run_id = start(web_sessions, workflow_id).run_id
    listed = client.get("/ui/fragments/workflows", headers=READ).get_data(as_text=True)
    assert f'data-workflow-id="{workflow_id}"' in listed and f"/ui/runs/{run_id}" in listed
    assert "manual" in listed and "w-active" in listed
    one = client.get(f"/ui/fragments/workflows/{workflow_id}", headers=READ)
    versions = re.findall(
        r'<td class="num">(\d+)</td><td class="clip">', one.get_data(as_text=True)
    )
    assert versions == ["2", "1"]
    assert client.get("/ui/fragments/workflows/nope", headers=READ).status_code == 404


def test_an_agent_page_shows_its_sessions_and_a_conversation_with_tool_calls(
    client: FlaskClient, web_sessions: sessionmaker[Session]
) -> None:
    agent = {"agent_id": "helper", "agent_name": "Helper", "llm_config": {"provider": "echo"}}
    assert client.post("/api/agents", json=agent, headers=ADMIN).status_code == 201
    with web_sessions.begin() as session:
        for role, content, calls, result in (
            ("user", "look up lead 42", None, None),
            (
                "assistant",
                "",
                [{"id": "c1", "name": "process_lead", "arguments": {"id": 42}}],
                None,
            ),
            (
                "tool",
                '{"score": 91}',
                None,
                {"id": "c1", "name": "process_lead", "ok": True, "ms": 12},
            ),
            ("assistant", "Lead 42 is hot.", None, None),
        ):
            session.add(
                AgentMessage(
                    agent_id="helper",
                    session_id="s-1",
                    role=role,
                    content=content,
                    tool_calls=calls,
                    tool_result=result,
                    created_at=utcnow(),
                )
            )
    listed = client.get("/ui/fragments/agents", headers=READ).get_data(as_text=True)
    assert 'data-agent-id="helper"' in listed and "echo" in listed
    html = client.get("/ui/fragments/agents/helper", headers=READ).get_data(as_text=True)
    assert "s-1" in html and "4 messages" in html
    assert html.count('class="message role-') == 4
    assert "calls <code>process_lead</code>" in html and "Lead 42 is hot." in html


def test_the_outbox_lists_stored_messages(
    client: FlaskClient, web_sessions: sessionmaker[Session], web_settings: Settings
) -> None:
    definition = {
        "workflow_id": unique_id("mail"),
        "nodes": [
            {
                "id": "mail",
                "type": "email_send",
                "params": {"to": "lead@example.com", "subject": "Welcome aboard", "body": "Hi"},
            }
        ],
    }
    started = start(web_sessions, save(web_sessions, definition))
    drive(web_sessions, web_settings, started.to_publish)
    html = client.get("/ui/fragments/outbox", headers=READ).get_data(as_text=True)
    assert "Welcome aboard" in html and "lead@example.com" in html
    assert f"/ui/runs/{started.run_id}" in html
