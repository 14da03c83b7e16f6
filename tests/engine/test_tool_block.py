"""A workflow's `tool` block: checked at save time, and its input schema applied to run inputs."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from app.engine.schema import WorkflowDefinition
from app.engine.tool_input import input_problems, tool_input_problems
from app.engine.validation import Problem, validate_definition
from tests.engine.param_schemas import PARAM_SCHEMAS

LEAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["email", "name"],
    "properties": {
        "email": {"type": "string", "format": "email"},
        "name": {"type": "string", "minLength": 1},
        "score": {"type": "integer", "minimum": 0, "maximum": 100},
        "tier": {"enum": ["free", "pro"]},
        "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}},
    },
    "additionalProperties": False,
}


def _workflow(tool: Any = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "workflow_id": "wf",
        "nodes": [{"id": "a", "type": "http_request", "params": {"url": "https://a.example/"}}],
    }
    if tool is not None:
        raw["tool"] = tool
    return raw


def _tool(**fields: Any) -> dict[str, Any]:
    return {"name": "score_lead", "description": "Score a sales lead.", **fields}


def _problems(tool: Any) -> list[tuple[str, str]]:
    _, problems = validate_definition(_workflow(tool), PARAM_SCHEMAS)
    return [(problem.code, problem.path) for problem in problems]


def test_a_tool_block_parses_with_an_object_schema_by_default() -> None:
    definition, problems = validate_definition(_workflow(_tool()), PARAM_SCHEMAS)
    assert problems == []
    assert definition is not None and definition.tool is not None
    assert definition.tool.name == "score_lead"
    assert definition.tool.input_schema == {"type": "object"}


def test_a_workflow_without_a_tool_block_has_no_tool() -> None:
    definition, problems = validate_definition(_workflow(), PARAM_SCHEMAS)
    assert problems == [] and definition is not None and definition.tool is None


def test_the_tool_block_survives_the_stored_round_trip() -> None:
    definition = WorkflowDefinition.model_validate(_workflow(_tool(input_schema=LEAD_SCHEMA)))
    stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert stored["tool"] == _tool(input_schema=LEAD_SCHEMA)


@pytest.mark.parametrize(
    "name",
    ["score lead", "score.lead", "", "x" * 65, "naïve", "score_lead\n"],
)
def test_a_name_outside_the_mcp_and_openai_rules_is_refused(name: str) -> None:
    assert _problems(_tool(name=name)) == [("invalid_schema", "tool.name")]


def test_a_64_character_name_with_dashes_and_digits_is_accepted() -> None:
    assert _problems(_tool(name="a-1_" * 16)) == []


@pytest.mark.parametrize("name", ["get_run", "ask_sales", "ask_"])
def test_names_served_by_mcp_itself_are_reserved(name: str) -> None:
    _, problems = validate_definition(_workflow(_tool(name=name)), PARAM_SCHEMAS)
    assert [(p.code, p.path) for p in problems] == [("reserved_tool_name", "tool.name")]
    assert "reserved" in problems[0].message


def test_asking_is_only_reserved_as_a_prefix() -> None:
    assert _problems(_tool(name="task_runner")) == []
    assert _problems(_tool(name="get_runs")) == []


@pytest.mark.parametrize("description", [None, "", "   ", "d" * 1025])
def test_the_description_is_required_and_bounded(description: Any) -> None:
    tool = _tool()
    if description is None:
        del tool["description"]
    else:
        tool["description"] = description
    assert _problems(tool) == [("invalid_schema", "tool.description")]


def test_unknown_keys_in_the_tool_block_are_refused() -> None:
    assert _problems(_tool(inputSchema={"type": "object"})) == [
        ("invalid_schema", "tool.inputSchema")
    ]


def test_an_invalid_json_schema_lists_every_problem_with_its_path() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "strin"}, "y": {"pattern": "("}},
        "required": "x",
    }
    assert _problems(_tool(input_schema=schema)) == [
        ("invalid_input_schema", "tool.input_schema.properties.x.type"),
        ("invalid_input_schema", "tool.input_schema.properties.y.pattern"),
        ("invalid_input_schema", "tool.input_schema.required"),
    ]


@pytest.mark.parametrize("schema", [{"type": "array"}, {"properties": {}}, {"type": ["object"]}])
def test_the_input_schema_must_be_an_object_schema(schema: dict[str, Any]) -> None:
    assert _problems(_tool(input_schema=schema)) == [
        ("invalid_input_schema", "tool.input_schema.type")
    ]


def test_an_input_schema_that_is_not_an_object_is_a_schema_problem() -> None:
    assert _problems(_tool(input_schema="object")) == [("invalid_schema", "tool.input_schema")]


def test_an_unknown_dialect_is_refused_and_a_known_one_is_used() -> None:
    assert _problems(_tool(input_schema={"$schema": "https://nope/", "type": "object"})) == [
        ("invalid_input_schema", 'tool.input_schema["$schema"]')
    ]
    draft7 = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {"n": {"type": "integer", "exclusiveMinimum": 0}},
    }
    assert _problems(_tool(input_schema=draft7)) == []


def test_references_must_resolve_inside_the_schema() -> None:
    schema = {
        "type": "object",
        "$defs": {"email": {"type": "string", "$anchor": "email"}},
        "properties": {
            "a": {"$ref": "#/$defs/email"},
            "b": {"$ref": "#email"},
            "default": {"$ref": "#/$defs/missing"},
            "d": {"$ref": "https://schemas.example/lead.json"},
        },
    }
    assert _problems(_tool(input_schema=schema)) == [
        ("invalid_input_schema", 'tool.input_schema.properties.d["$ref"]'),
        ("invalid_input_schema", 'tool.input_schema.properties.default["$ref"]'),
    ]


def test_tool_problems_come_with_the_definitions_other_problems() -> None:
    raw = _workflow(_tool(name="get_run", input_schema={"type": "array"}))
    raw["nodes"][0]["next"] = "nowhere"
    _, problems = validate_definition(raw, PARAM_SCHEMAS)
    assert {(p.code, p.path) for p in problems} == {
        ("unknown_reference", "nodes[0].next"),
        ("reserved_tool_name", "tool.name"),
        ("invalid_input_schema", "tool.input_schema.type"),
    }


def test_schema_problems_are_reported_when_another_tool_field_is_wrong() -> None:
    tool = {"name": "x y", "input_schema": {"type": "list"}}
    assert set(_problems(tool)) == {
        ("invalid_schema", "tool.name"),
        ("invalid_schema", "tool.description"),
        ("invalid_input_schema", "tool.input_schema.type"),
    }


SECRET = "s3cr3t-value"


def _input_pairs(value: Any, prefix: str = "input") -> list[tuple[str, str]]:
    return [(p.code, p.path) for p in input_problems(LEAD_SCHEMA, value, prefix=prefix)]


def test_a_matching_input_has_no_problems() -> None:
    assert input_problems(LEAD_SCHEMA, {"email": "a@b.example", "name": "Ada", "score": 80}) == []


def test_every_problem_of_an_input_is_listed_sorted_by_path() -> None:
    value = {
        "email": SECRET,
        "score": 101,
        "tier": SECRET,
        "code": SECRET,
        "tags": ["ok", SECRET],
        "extra": 1,
    }
    assert _input_pairs(value) == [
        ("pattern", "input.code"),
        ("format", "input.email"),
        ("additionalProperties", "input.extra"),
        ("missing", "input.name"),
        ("maximum", "input.score"),
        ("maxLength", "input.tags[1]"),
        ("enum", "input.tier"),
    ]


def test_messages_never_echo_the_value() -> None:
    value = {"email": SECRET, "name": 7, "score": SECRET, "tier": SECRET, "code": SECRET}
    problems = input_problems(LEAD_SCHEMA, value)
    assert len(problems) == 5
    assert all(SECRET not in problem.message for problem in problems)
    assert {p.path: p.message for p in problems}["input.score"] == "must be of type integer"


def test_a_missing_property_is_named_by_its_own_path() -> None:
    assert input_problems(LEAD_SCHEMA, {}) == [
        Problem("missing", "input.email", "is required"),
        Problem("missing", "input.name", "is required"),
    ]


def test_the_prefix_names_where_the_value_sits() -> None:
    assert _input_pairs({"name": "Ada"}, prefix="arguments") == [("missing", "arguments.email")]
    assert _input_pairs({"name": "Ada"}, prefix="") == [("missing", "email")]
    assert _input_pairs([1], prefix="arguments") == [("type", "arguments")]


def test_an_extra_property_is_named_but_its_value_is_not_shown() -> None:
    problems = input_problems(LEAD_SCHEMA, {"email": "a@b.example", "name": "A", "x": SECRET})
    assert problems == [
        Problem("additionalProperties", "input.x", "is not a property the schema allows")
    ]


def test_the_cached_validator_of_a_tool_block_gives_the_same_problems() -> None:
    definition = WorkflowDefinition.model_validate(_workflow(_tool(input_schema=LEAD_SCHEMA)))
    assert definition.tool is not None
    value = {"email": 1, "tags": "x"}
    assert tool_input_problems(definition.tool, value) == input_problems(LEAD_SCHEMA, value)
    assert definition.tool.input_validator is definition.tool.input_validator


def test_a_remote_reference_is_never_fetched() -> None:
    """A schema that skipped the save-time checks still does no I/O (jsonschema's default
    registry would GET the URL): one problem, and the server sees no request."""
    requests: list[str] = []

    class Schemas(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = json.dumps({"type": "string"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Schemas)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/lead.json"
        schema = {"type": "object", "properties": {"a": {"$ref": url}}}
        problems = input_problems(schema, {"a": 1})
    finally:
        server.shutdown()
        server.server_close()
    assert [(p.code, p.path) for p in problems] == [("invalid_input_schema", "input")]
    assert requests == []
