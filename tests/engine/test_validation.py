from __future__ import annotations

from typing import Any

import pytest

from app.engine.schema import WorkflowDefinition
from app.engine.validation import Problem, check_definition, validate_definition
from app.errors import DefinitionInvalid
from tests.engine.param_schemas import PARAM_SCHEMAS


def _fetch(node_id: str = "fetch", **fields: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "http_request",
        "params": {"url": "https://a.example/"},
        **fields,
    }


def _workflow(*nodes: Any, **fields: Any) -> dict[str, Any]:
    return {"workflow_id": "wf", "nodes": list(nodes), **fields}


def _problems(raw: Any) -> list[Problem]:
    return validate_definition(raw, PARAM_SCHEMAS)[1]


def _pairs(raw: Any) -> list[tuple[str, str]]:
    return [(problem.code, problem.path) for problem in _problems(raw)]


SALES_LEAD: dict[str, Any] = _workflow(
    _fetch(params={"url": "{{ trigger.crm_url }}"}, next="check"),
    {
        "id": "check",
        "type": "conditional",
        "params": {"condition": "nodes.fetch.json.score >= 80"},
        "then": "hot",
        "else": "notify",
    },
    _fetch("hot", next="notify", retry={"max_attempts": 3, "backoff_s": 2}, timeout_s=60),
    {"id": "notify", "type": "webhook", "params": {"url": "https://hooks.example/sales"}},
)


def test_valid_definition_has_no_problems() -> None:
    definition, problems = validate_definition(SALES_LEAD, PARAM_SCHEMAS)
    assert problems == []
    assert isinstance(definition, WorkflowDefinition)


def test_check_definition_returns_the_parsed_definition() -> None:
    assert check_definition(SALES_LEAD, PARAM_SCHEMAS).entry_id == "fetch"


def test_check_definition_raises_with_every_problem() -> None:
    raw = _workflow(_fetch(next="nowhere"), {"id": "b", "type": "nope"})
    with pytest.raises(DefinitionInvalid) as caught:
        check_definition(raw, PARAM_SCHEMAS)
    assert {p.code for p in caught.value.problems} == {
        "unknown_reference",
        "unknown_type",
        "unreachable",
    }


def test_problem_serialises_to_a_dict() -> None:
    problem = Problem("cycle", "nodes[0]", "cycle: a -> a")
    assert problem.to_dict() == {"code": "cycle", "path": "nodes[0]", "message": "cycle: a -> a"}


def test_a_non_object_is_an_invalid_schema() -> None:
    definition, problems = validate_definition([1, 2], PARAM_SCHEMAS)  # type: ignore[arg-type]
    assert definition is None
    assert [p.code for p in problems] == ["invalid_schema"]


def test_schema_error_path_points_into_the_json() -> None:
    raw = _workflow(_fetch(next="b"), _fetch("b", next="c"), _fetch("c", retry={"max_attempts": 0}))
    assert _pairs(raw) == [("invalid_schema", "nodes[2].retry.max_attempts")]


def test_missing_field_path_names_the_field() -> None:
    raw = _workflow(_fetch(next="b"), {"id": "b"})
    assert ("invalid_schema", "nodes[1].type") in _pairs(raw)


def test_unexpected_field_is_reported_at_its_path() -> None:
    assert _pairs(_workflow(_fetch(nxt="b"))) == [("invalid_schema", "nodes[0].nxt")]


def test_wrong_next_is_one_problem_not_one_per_union_member() -> None:
    problems = _problems(_workflow(_fetch(next=5)))
    assert [(p.code, p.path) for p in problems] == [("invalid_schema", "nodes[0].next")]
    assert "node id" in problems[0].message


def test_broken_shape_returns_no_definition() -> None:
    definition, _ = validate_definition(_workflow(_fetch(), "not a node"), PARAM_SCHEMAS)
    assert definition is None


def test_broken_shape_still_reports_graph_problems() -> None:
    raw = _workflow(_fetch(next="ghost"), "not a node", {"id": "x", "type": "htp_request"})
    assert _pairs(raw) == [
        ("invalid_schema", "nodes[1]"),
        ("unknown_reference", "nodes[0].next"),
        ("unknown_type", "nodes[2].type"),
    ]


def test_unreachable_is_reported_beside_a_top_level_schema_error() -> None:
    raw = {"nodes": [_fetch("a"), _fetch("b")]}
    assert _pairs(raw) == [("invalid_schema", "workflow_id"), ("unreachable", "nodes[1]")]


def test_reference_to_a_node_that_failed_the_schema_is_not_unknown() -> None:
    raw = _workflow(_fetch(next="b"), {"id": "b", "type": "http_request", "retry": 1})
    assert _pairs(raw) == [("invalid_schema", "nodes[1].retry")]


def test_duplicate_id_points_at_the_second_node() -> None:
    problems = _problems(_workflow(_fetch(next="b"), _fetch("b"), _fetch("b")))
    assert [(p.code, p.path) for p in problems] == [("duplicate_id", "nodes[2].id")]
    assert "nodes[1]" in problems[0].message


def test_unknown_type_suggests_a_close_match() -> None:
    problems = _problems(_workflow({"id": "a", "type": "http_reqest"}))
    assert [(p.code, p.path) for p in problems] == [("unknown_type", "nodes[0].type")]
    assert "did you mean 'http_request'?" in problems[0].message


@pytest.mark.parametrize(
    ("node", "path"),
    [
        (_fetch("a", next="ghost"), "nodes[0].next"),
        (_fetch("a", next=["b", "ghost"]), "nodes[0].next[1]"),
        (
            {"id": "a", "type": "conditional", "params": {"condition": True}, "then": "ghost"},
            "nodes[0].then",
        ),
        (
            {"id": "a", "type": "conditional", "params": {"condition": True}, "else": "ghost"},
            "nodes[0].else",
        ),
    ],
)
def test_unknown_reference_is_reported_at_its_path(node: dict[str, Any], path: str) -> None:
    raw = _workflow(node, _fetch("b"))
    assert ("unknown_reference", path) in _pairs(raw)


def test_unknown_start_is_an_unknown_reference() -> None:
    assert _pairs(_workflow(_fetch(), start="ghost")) == [("unknown_reference", "start")]


def test_cycle_names_its_path_from_its_first_node() -> None:
    raw = _workflow(_fetch("a", next="b"), _fetch("b", next="c"), _fetch("c", next="b"))
    problems = _problems(raw)
    assert [(p.code, p.path) for p in problems] == [("cycle", "nodes[1]")]
    assert problems[0].message == "cycle: b -> c -> b"


def test_cycle_through_the_entry_names_every_node() -> None:
    raw = _workflow(_fetch("a", next="b"), _fetch("b", next="c"), _fetch("c", next="a"))
    assert [p.message for p in _problems(raw)] == ["cycle: a -> b -> c -> a"]


def test_self_loop_is_a_cycle() -> None:
    assert _pairs(_workflow(_fetch("a", next="a"))) == [("cycle", "nodes[0]")]


def test_each_separate_cycle_is_reported() -> None:
    raw = _workflow(
        _fetch("a", next=["b", "c"]),
        _fetch("b", next="b"),
        _fetch("c", next="d"),
        _fetch("d", next="c"),
    )
    assert [p.message for p in _problems(raw)] == ["cycle: b -> b", "cycle: c -> d -> c"]


def test_unreachable_node_is_reported() -> None:
    problems = _problems(_workflow(_fetch("a"), _fetch("b")))
    assert [(p.code, p.path) for p in problems] == [("unreachable", "nodes[1]")]


def test_start_makes_another_node_the_entry() -> None:
    raw = _workflow(_fetch("a"), _fetch("b", next="a"), start="b")
    assert _problems(raw) == []


def test_invalid_param_is_reported_at_its_path() -> None:
    raw = _workflow(_fetch(next="b"), _fetch("b", params={"url": "not a url"}))
    assert _pairs(raw) == [("invalid_params", "nodes[1].params.url")]


def test_templated_param_is_not_type_checked() -> None:
    raw = _workflow(_fetch(params={"url": "{{ trigger.url }}", "timeout_s": "{{ trigger.t }}"}))
    assert _problems(raw) == []


def test_missing_required_param_is_reported_although_others_are_templates() -> None:
    raw = _workflow(_fetch(params={"method": "{{ trigger.method }}"}))
    assert _pairs(raw) == [("invalid_params", "nodes[0].params.url")]


def test_misspelt_param_holding_a_template_is_still_reported() -> None:
    raw = _workflow(_fetch(params={"url": "https://a.example/", "methd": "{{ trigger.m }}"}))
    assert _pairs(raw) == [("invalid_params", "nodes[0].params.methd")]


def test_wrong_literal_beside_a_template_is_still_reported() -> None:
    params = {"url": "https://a.example/", "headers": {"a": "{{ trigger.h }}", "b": 5}}
    assert _pairs(_workflow(_fetch(params=params))) == [
        ("invalid_params", "nodes[0].params.headers.b")
    ]


def test_template_syntax_error_is_reported_when_saved() -> None:
    problems = _problems(_workflow(_fetch(params={"url": "{{ trigger.url"})))
    assert [(p.code, p.path) for p in problems] == [("invalid_template", "nodes[0].params.url")]
    assert "syntax error" in problems[0].message


def test_conditional_without_then_or_else_is_branch_misuse() -> None:
    raw = _workflow({"id": "a", "type": "conditional", "params": {"condition": True}})
    assert _pairs(raw) == [("branch_misuse", "nodes[0]")]


def test_conditional_with_next_is_branch_misuse() -> None:
    node = {
        "id": "a",
        "type": "conditional",
        "params": {"condition": True},
        "then": "b",
        "next": "b",
    }
    assert _pairs(_workflow(node, _fetch("b"))) == [("branch_misuse", "nodes[0].next")]


@pytest.mark.parametrize("field", ["then", "else"])
def test_then_or_else_on_another_node_type_is_branch_misuse(field: str) -> None:
    raw = _workflow(_fetch("a", **{field: "b"}), _fetch("b"))
    assert _pairs(raw) == [("branch_misuse", f"nodes[0].{field}")]


def test_conditional_condition_must_compile() -> None:
    node = {"id": "a", "type": "conditional", "params": {"condition": "score >="}, "then": "b"}
    assert _pairs(_workflow(node, _fetch("b"))) == [("invalid_params", "nodes[0].params.condition")]


def test_conditional_condition_must_not_be_mixed_text() -> None:
    node = {"id": "a", "type": "conditional", "params": {"condition": "{{ x }} > 1"}, "then": "b"}
    assert _pairs(_workflow(node, _fetch("b"))) == [("invalid_params", "nodes[0].params.condition")]


def test_every_problem_is_reported_at_once() -> None:
    raw = _workflow(
        _fetch("a", next=["b", "ghost"]),
        _fetch("b", next="a", params={"url": "nope"}),
        {"id": "b", "type": "smtp"},
        _fetch("lonely"),
    )
    assert sorted(_pairs(raw)) == [
        ("cycle", "nodes[0]"),
        ("duplicate_id", "nodes[2].id"),
        ("invalid_params", "nodes[1].params.url"),
        ("unknown_reference", "nodes[0].next[1]"),
        ("unknown_type", "nodes[2].type"),
        ("unreachable", "nodes[3]"),
    ]
