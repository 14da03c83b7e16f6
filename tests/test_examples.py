"""The sample workflows shipped in the package (app/examples)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from app.drivers import param_schemas
from app.engine.validation import validate_definition
from app.examples import SALES_LEAD, example_names, load_example, placeholders

VALUES = {
    "crm_url": "https://crm.example/api",
    "notify_url": "https://hooks.example/sales",
    "trigger_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
}


def test_the_sales_lead_sample_is_a_valid_workflow_once_filled_in() -> None:
    definition = load_example(SALES_LEAD, **VALUES)
    _parsed, problems = validate_definition(definition, param_schemas())
    assert problems == []
    assert (
        definition["nodes"][0]["params"]["url"]
        == "https://crm.example/api/leads/{{ trigger.lead_id }}"
    )


def test_the_sales_lead_sample_follows_the_seed() -> None:
    nodes = load_example(SALES_LEAD, **VALUES)["nodes"]
    assert [(node["id"], node["type"]) for node in nodes] == [
        ("fetch", "data_fetch"),
        ("analyze", "mcp_llm"),
        ("write_email", "ai_content_generation"),
        ("email", "email_send"),
        ("check", "conditional"),
        ("sms", "twilio_sms"),
        ("notify", "webhook"),
    ]


def test_it_holds_no_secret_only_names_of_credentials() -> None:
    text = str(load_example(SALES_LEAD, **VALUES))
    assert "credential': 'crm-token'" in text
    assert "credential': 'sales-webhook'" in text
    assert "whsec_" not in text.replace(VALUES["trigger_secret"], "")


def test_a_missing_value_is_named() -> None:
    assert placeholders(SALES_LEAD) == set(VALUES)
    with pytest.raises(KeyError, match="notify_url"):
        load_example(SALES_LEAD, crm_url="x", trigger_secret="y")


def test_samples_are_installed_with_the_package() -> None:
    assert SALES_LEAD in example_names()
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "*.json" in pyproject["tool"]["setuptools"]["package-data"]["app.examples"]
