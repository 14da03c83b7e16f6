"""Email and SMS nodes inside runs: header injection from data, save-time checks of literals."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.errors import DefinitionInvalid
from app.workflows import get_run, save_workflow
from tests.workflows.conftest import Driver


def email_workflow(subject: str, workflow_id: str = "welcome") -> dict[str, object]:
    return {
        "workflow_id": workflow_id,
        "nodes": [
            {
                "id": "email",
                "type": "email_send",
                "params": {"to": "{{ trigger.email }}", "subject": subject, "body": "Hello"},
            }
        ],
    }


def test_a_line_break_rendered_into_a_header_fails_the_node_naming_the_field(
    worker: Driver, sessions: sessionmaker[Session]
) -> None:
    payload = {"email": "ada@example.com", "name": "Ada\r\nBcc: everyone@example.com"}
    run_id = worker.start(email_workflow("Welcome, {{ trigger.name }}"), payload)
    worker.drain()
    with sessions() as session:
        run = get_run(session, run_id)
    [node] = run["nodes"]
    assert (run["status"], node["status"]) == ("failed", "failed")
    assert node["error"].startswith("invalid params after rendering: params.subject:")
    assert "subject contains a line break (CR or LF)" in node["error"]
    assert "everyone@example.com" not in node["error"]  # the data is never echoed


def test_a_line_break_in_a_literal_header_is_refused_when_saved(
    sessions: sessionmaker[Session],
) -> None:
    definition = email_workflow("Hello\r\nBcc: everyone@example.com", "literal")
    with sessions.begin() as session, pytest.raises(DefinitionInvalid) as raised:
        save_workflow(session, definition)
    [problem] = raised.value.problems
    assert (problem.code, problem.path) == ("invalid_params", "nodes[0].params.subject")
    assert "subject contains a line break (CR or LF)" in problem.message
