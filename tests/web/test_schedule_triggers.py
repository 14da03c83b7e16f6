"""Schedule triggers over HTTP: a bad cron or time zone is a 422 naming the field."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import ADMIN
from tests.web.factories import two_step, unique_id

#: The run and trigger contract: on SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.both_databases


def _save(client: FlaskClient, trigger: dict) -> tuple[int, list[dict]]:
    definition = {**two_step(unique_id("cron")), "trigger": trigger}
    response = client.post("/api/workflows", json=definition, headers=ADMIN)
    problems = (response.get_json().get("error") or {}).get("details") or {}
    return response.status_code, problems.get("problems", [])


def test_a_valid_schedule_is_saved(client: FlaskClient) -> None:
    status, _ = _save(client, {"type": "schedule", "cron": "0 9 * * 1-5", "timezone": "Asia/Tokyo"})
    assert status == 201


def test_a_bad_cron_and_a_bad_time_zone_are_both_listed(client: FlaskClient) -> None:
    status, problems = _save(
        client, {"type": "schedule", "cron": "61 * * * *", "timezone": "Utc+2"}
    )
    assert status == 422
    assert {problem["path"] for problem in problems} == {"trigger.cron", "trigger.timezone"}
    assert any("is not valid" in problem["message"] for problem in problems)


def test_a_schedule_without_cron_names_the_missing_field(client: FlaskClient) -> None:
    status, problems = _save(client, {"type": "schedule"})
    assert status == 422
    assert [problem["path"] for problem in problems] == ["trigger.cron"]
