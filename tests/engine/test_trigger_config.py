"""A webhook trigger's scheme and secrets are checked when the workflow is saved."""

from __future__ import annotations

from typing import Any

import pytest

from app.engine.validation import validate_definition
from tests.engine.param_schemas import PARAM_SCHEMAS

STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _problems(trigger: dict[str, Any]) -> list[tuple[str, str]]:
    raw = {
        "workflow_id": "wf",
        "trigger": trigger,
        "nodes": [{"id": "a", "type": "http_request", "params": {"url": "https://a.example/"}}],
    }
    return [(p.path, p.message) for p in validate_definition(raw, PARAM_SCHEMAS)[1]]


@pytest.mark.parametrize(
    "trigger",
    [
        {"type": "webhook", "secrets": [STANDARD_SECRET]},
        {"type": "webhook", "scheme": "standard", "secrets": [STANDARD_SECRET, "whsec_AAAA"]},
        {"type": "webhook", "scheme": "github", "secrets": ["It's a Secret to Everybody"]},
        {"type": "webhook", "scheme": "stripe", "secrets": ["whsec_anything"]},
        {"type": "schedule", "cron": "*/5 * * * *"},
        {"type": "manual"},
    ],
)
def test_valid_trigger_configs_are_accepted(trigger: dict[str, Any]) -> None:
    assert _problems(trigger) == []


def test_a_webhook_trigger_without_secrets_is_refused() -> None:
    [(path, message)] = _problems({"type": "webhook"})
    assert path.startswith("trigger") and "secret" in message


def test_an_unknown_scheme_is_refused_naming_the_known_ones() -> None:
    [(path, message)] = _problems({"type": "webhook", "scheme": "gitlab", "secrets": ["s"]})
    assert path == "trigger.scheme" and "github" in message


def test_an_empty_secret_is_refused() -> None:
    [(path, _)] = _problems({"type": "webhook", "scheme": "github", "secrets": ["ok", " "]})
    assert path == "trigger.secrets"


def test_a_standard_secret_that_is_not_base64_is_refused_without_echoing_it() -> None:
    [(path, message)] = _problems({"type": "webhook", "secrets": ["whsec_not base64!"]})
    assert path == "trigger.secrets"
    assert "not base64!" not in message
