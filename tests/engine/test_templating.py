from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine import templating
from app.engine.templating import (
    condition_error,
    contains_template,
    evaluate_condition,
    render_params,
    template_errors,
)
from app.errors import TemplateError

CONTEXT: dict[str, Any] = {
    "trigger": {
        "crm_url": "https://crm.example/lead/7",
        "lead": {"name": "Ada", "tags": ["vip", "eu"]},
        "score": 91,
        "ok": True,
        "nothing": None,
        "injected": "{{ 7*7 }}",
        "secret_key": "s3cr3t-value",
        "big": 10**9,
    },
    "nodes": {"fetch": {"json": {"score": 91}, "status": 200}},
    "run": {"id": "run-1", "workflow_id": "wf", "attempt": 1},
    "agent": {"id": "sales", "name": "Sales"},
}


def test_contains_template_finds_a_string_nested_in_dicts_and_lists() -> None:
    assert contains_template({"a": [1, {"b": "x {{ y }}"}]})


def test_contains_template_finds_a_statement_tag() -> None:
    assert contains_template("{% if x %}y{% endif %}")


@pytest.mark.parametrize("value", ["plain", "a { b } c", 7, None, {"a": ["b"]}, "{# note #}"])
def test_contains_template_is_false_without_markers(value: Any) -> None:
    assert not contains_template(value)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ trigger.lead }}", {"name": "Ada", "tags": ["vip", "eu"]}),
        ("{{ trigger.lead.tags }}", ["vip", "eu"]),
        ("{{ trigger.score }}", 91),
        ("{{ trigger.ok }}", True),
        ("{{ trigger.nothing }}", None),
        ("{{ trigger.score > 90 }}", True),
    ],
)
def test_single_expression_keeps_its_type(template: str, expected: Any) -> None:
    assert render_params(template, CONTEXT) == expected


def test_single_expression_with_surrounding_whitespace_keeps_its_type() -> None:
    assert render_params("  {{ trigger.score }}\n", CONTEXT) == 91


def test_whitespace_control_markers_still_make_a_single_expression() -> None:
    assert render_params("{{- trigger.score -}}", CONTEXT) == 91


def test_two_expressions_render_to_a_string() -> None:
    assert render_params("{{ trigger.score }}{{ trigger.score }}", CONTEXT) == "9191"


def test_mixed_text_renders_to_a_string() -> None:
    assert render_params("Score: {{ trigger.score }}", CONTEXT) == "Score: 91"


def test_mixed_text_shows_dicts_and_lists_as_json() -> None:
    rendered = render_params("Lead: {{ trigger.lead }}", CONTEXT)
    assert rendered == 'Lead: {"name": "Ada", "tags": ["vip", "eu"]}'


def test_strings_nested_in_dicts_and_lists_are_rendered() -> None:
    params = {"url": "{{ trigger.crm_url }}", "payload": {"ids": ["{{ run.id }}", 3, None]}}
    assert render_params(params, CONTEXT) == {
        "url": "https://crm.example/lead/7",
        "payload": {"ids": ["run-1", 3, None]},
    }


def test_plain_strings_are_returned_unchanged() -> None:
    assert render_params({"a": "no {# template #} here", "b": 2}, CONTEXT) == {
        "a": "no {# template #} here",
        "b": 2,
    }


def test_trailing_newline_of_mixed_text_is_kept() -> None:
    assert render_params("Hi {{ agent.name }}\n", CONTEXT) == "Hi Sales\n"


def test_payload_data_is_never_rendered_again() -> None:
    assert render_params("{{ trigger.injected }}", CONTEXT) == "{{ 7*7 }}"


def test_payload_data_in_mixed_text_is_never_rendered_again() -> None:
    assert render_params("got {{ trigger.injected }}", CONTEXT) == "got {{ 7*7 }}"


@given(st.text())
@settings(max_examples=200, deadline=None)
def test_any_payload_string_comes_back_verbatim(payload: str) -> None:
    assert render_params("{{ trigger.value }}", {"trigger": {"value": payload}}) == payload


def test_is_defined_works_on_a_missing_key() -> None:
    assert render_params("{{ trigger.missing is defined }}", CONTEXT) is False


def test_default_filter_fills_a_missing_key() -> None:
    assert render_params("{{ trigger.missing | default('none') }}", CONTEXT) == "none"


def test_missing_key_is_an_error_naming_the_param_path() -> None:
    with pytest.raises(TemplateError, match=r"^params\.url: undefined: .*'missing'"):
        render_params({"url": "{{ trigger.missing }}"}, CONTEXT)


def test_error_path_names_list_indexes() -> None:
    with pytest.raises(TemplateError, match=r"^params\.to\[1\]: "):
        render_params({"to": ["a", "{{ nope }}"]}, CONTEXT)


def test_missing_key_in_mixed_text_is_an_error() -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render_params("Hi {{ trigger.lead.missing }}", CONTEXT)


def test_undefined_inside_a_list_literal_is_an_error() -> None:
    with pytest.raises(TemplateError, match="undefined"):
        render_params("{{ [trigger.missing] }}", CONTEXT)


def test_error_message_names_the_template_text() -> None:
    with pytest.raises(TemplateError, match=r"in template '\{\{ trigger\.missing \}\}'"):
        render_params("{{ trigger.missing }}", CONTEXT)


def test_syntax_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"^params: syntax error"):
        render_params("{{ trigger.crm_url", CONTEXT)


def test_error_message_never_echoes_a_key_taken_from_data() -> None:
    with pytest.raises(TemplateError) as caught:
        render_params("{{ trigger[trigger.secret_key] }}", CONTEXT)
    assert "s3cr3t-value" not in str(caught.value)


def test_runtime_error_message_names_only_the_exception_type() -> None:
    with pytest.raises(TemplateError, match=r"ZeroDivisionError while evaluating"):
        render_params("{{ trigger.score / 0 }}", CONTEXT)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ trigger.lead.tags.__class__ }}",
    ],
)
def test_sandbox_blocks_attribute_escapes(template: str) -> None:
    with pytest.raises(TemplateError, match="blocked by the sandbox"):
        render_params(template, CONTEXT)


def test_sandbox_blocks_mutating_the_context() -> None:
    with pytest.raises(TemplateError, match="blocked by the sandbox"):
        render_params("{{ trigger.lead.tags.append('x') }}", CONTEXT)
    assert CONTEXT["trigger"]["lead"]["tags"] == ["vip", "eu"]


def test_string_repetition_sized_by_the_payload_is_capped() -> None:
    with pytest.raises(TemplateError, match="too long"):
        render_params("{{ 'x' * trigger.big }}", CONTEXT)


def test_integer_power_is_capped() -> None:
    with pytest.raises(TemplateError, match="too large"):
        render_params("{{ 2 ** trigger.big }}", CONTEXT)


def test_small_arithmetic_still_works() -> None:
    assert render_params("{{ 'ab' * 2 ~ (2 ** 10) }}", CONTEXT) == "abab1024"


def test_templates_are_compiled_once() -> None:
    source = "{{ run.id }} compiled once"
    render_params(source, CONTEXT)
    hits = templating._compile_template.cache_info().hits
    render_params(source, CONTEXT)
    assert templating._compile_template.cache_info().hits == hits + 1


def test_condition_accepts_a_bare_expression() -> None:
    assert evaluate_condition("nodes.fetch.json.score >= 80", CONTEXT) is True


def test_condition_accepts_an_expression_wrapped_in_braces() -> None:
    assert evaluate_condition("{{ nodes.fetch.json.score < 80 }}", CONTEXT) is False


@pytest.mark.parametrize("value", [True, False])
def test_condition_passes_a_bool_through(value: bool) -> None:
    assert evaluate_condition(value, CONTEXT) is value


def test_condition_result_is_a_bool() -> None:
    assert evaluate_condition("trigger.lead.tags", CONTEXT) is True


def test_condition_error_names_the_expression() -> None:
    with pytest.raises(TemplateError, match=r"^condition: undefined: .* 'nodes\.fetch\.missing'"):
        evaluate_condition("nodes.fetch.missing", CONTEXT)


def test_condition_syntax_error_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        evaluate_condition("nodes.fetch.json.score >=", CONTEXT)


def test_condition_rejects_mixed_text() -> None:
    # Rendering "{{ x }} > 1" first and evaluating the result would run data as code.
    with pytest.raises(TemplateError, match="one expression"):
        evaluate_condition("{{ trigger.score }} > 1", CONTEXT)


def test_condition_sandbox_blocks_attribute_escapes() -> None:
    with pytest.raises(TemplateError, match="blocked by the sandbox"):
        evaluate_condition("''.__class__.__mro__", CONTEXT)


def test_template_errors_lists_each_broken_template_with_its_path() -> None:
    params = {"url": "{{ x", "payload": {"ok": "{{ y }}", "bad": ["{% if %}"]}}
    paths = [path for path, _ in template_errors(params, "nodes[0].params")]
    assert paths == ["nodes[0].params.url", "nodes[0].params.payload.bad[0]"]


def test_condition_error_is_none_for_a_valid_expression() -> None:
    assert condition_error("nodes.fetch.json.score >= 80") is None


def test_condition_error_explains_a_broken_expression() -> None:
    assert condition_error("a >=") is not None


def test_an_exception_that_is_not_the_templates_fault_passes_through() -> None:
    class TimeLimit(Exception):  # like Celery's SoftTimeLimitExceeded
        pass

    class Clock:
        def __getattr__(self, name: str) -> Any:
            raise TimeLimit

    with pytest.raises(TimeLimit):
        render_params("{{ clock.now }}", {"clock": Clock()})
