from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine import sandbox, templating
from app.engine.templating import (
    condition_error,
    contains_template,
    evaluate_condition,
    render_params,
    template_errors,
)
from app.errors import NodeTimeout, TemplateError

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
        "{{ cycler(1).__init__.__globals__ }}",
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
    params = {"url": "{{ x", "payload": {"ok": "{{ trigger.y }}", "bad": ["{% if %}"]}}
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


def test_self_is_a_template_error_naming_the_param() -> None:
    with pytest.raises(TemplateError, match=r"^params\.values\.x: `self` is not available"):
        render_params({"x": "{{ self }}"}, CONTEXT, path="params.values")


def test_self_in_mixed_text_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="`self` is not available"):
        render_params("Hello {{ self }}", CONTEXT)


def test_self_is_reported_when_the_definition_is_saved() -> None:
    assert template_errors({"x": "Hi {{ self }}"}, "nodes[0].params.values") == [
        (
            "nodes[0].params.values.x",
            "`self` is not available: templates see trigger, nodes, run and agent",
        )
    ]


def test_self_in_a_condition_is_reported_when_saved() -> None:
    assert condition_error("self") == (
        "`self` is not available: templates see trigger, nodes, run and agent"
    )


@pytest.mark.parametrize("helper", ["range", "dict", "cycler", "joiner", "namespace"])
def test_a_helper_used_as_a_value_is_reported_when_saved(helper: str) -> None:
    [(path, message)] = template_errors({"x": f"got {{{{ {helper} }}}}"}, "p")
    assert (path, message) == ("p.x", f"`{helper}` is a function: call it, e.g. `{helper}(...)`")


@pytest.mark.parametrize("template", ["{{ range(3) }}", "{{ namespace() }}", "{{ cycler(1) }}"])
def test_a_helpers_object_as_a_whole_param_is_reported_when_saved(template: str) -> None:
    [(_, message)] = template_errors(template, "p")
    assert "not a value a param can hold" in message


def test_a_range_made_into_a_list_keeps_its_type() -> None:
    assert render_params("{{ range(3) | list }}", CONTEXT) == [0, 1, 2]


def test_a_range_still_has_a_length_items_and_membership() -> None:
    template = "{{ range(5) | length }} {{ 3 in range(5) }} {{ range(5)[1:3] | list }}"
    assert render_params(template, CONTEXT) == "5 True [1, 2]"


def test_lipsum_is_not_offered() -> None:
    assert template_errors("{{ lipsum(1) }}", "p") == [
        ("p", "unknown name 'lipsum': templates see trigger, nodes, run and agent")
    ]
    with pytest.raises(TemplateError, match="undefined"):
        render_params("{{ lipsum(1) }}", CONTEXT)


def test_a_name_outside_the_context_is_reported_when_saved() -> None:
    assert template_errors({"to": "{{ trgger.email }}"}, "p") == [
        ("p.to", "unknown name 'trgger': templates see trigger, nodes, run and agent")
    ]


def test_names_the_template_declares_are_not_unknown() -> None:
    template = "{% set n = 1 %}{% for x in trigger.lead.tags %}{{ loop.index }}{{ x }}{% endfor %}"
    assert template_errors(template, "p") == []


def test_a_condition_naming_something_outside_the_context_is_reported_when_saved() -> None:
    assert condition_error("nodez.fetch.ok") == (
        "unknown name 'nodez': templates see trigger, nodes, run and agent"
    )


def test_an_object_that_is_not_data_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"^params\.x: the value is a dict_items, not data"):
        render_params({"x": "{{ trigger.lead.items() }}"}, CONTEXT)


def test_an_object_that_is_not_data_in_mixed_text_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="the value is a dict_keys, not data"):
        render_params("keys: {{ [trigger.lead.keys()] }}", CONTEXT)


def test_a_number_json_cannot_hold_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="not a finite number"):
        render_params("{{ 1e308 * 10 }}", CONTEXT)


def test_a_constant_jinja_cannot_compile_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="NameError while evaluating"):
        render_params("{{ 'nan' | float }}", CONTEXT)


BURN = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_nested_loops_stop_at_the_step_budget() -> None:
    with pytest.raises(TemplateError, match=r"^params\.x: template exceeded 100000 loop"):
        render_params({"x": BURN}, CONTEXT)


def test_loops_over_data_count_too() -> None:
    template = "{% for a in 'x' * 1000 %}{% for b in 'y' * 1000 %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match="exceeded 100000 loop iterations"):
        render_params(template, CONTEXT)


def test_a_macro_calling_itself_twice_stops_at_the_step_budget() -> None:
    template = (
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(60) }}"
    )
    with pytest.raises(TemplateError, match="exceeded 100000 loop iterations and calls"):
        render_params(template, CONTEXT)


def test_a_recursive_loop_stops_at_the_step_budget() -> None:
    template = (
        "{% for x in [1, 2] recursive %}"
        "{% if loop.depth < 60 %}{{ loop([1, 2]) }}{% endif %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="exceeded 100000 loop iterations and calls"):
        render_params(template, CONTEXT)


def test_a_loop_over_a_range_counts_each_item_once() -> None:
    template = "{% for i in range(90000) %}{% endfor %}done"
    assert render_params(template, CONTEXT) == "done"


def test_range_items_a_filter_consumes_count_across_the_render() -> None:
    assert render_params("{{ range(60000) | list | length }}", CONTEXT) == 60000
    with pytest.raises(TemplateError, match="exceeded 100000"):
        render_params("{{ (range(60000) | list) + (range(60000) | list) }}", CONTEXT)


def test_the_step_budget_is_per_render() -> None:
    params = {"a": "{% for i in range(90000) %}{% endfor %}a", "b": "{{ range(90000) | sum }}"}
    assert render_params(params, CONTEXT) == {"a": "a", "b": 4049955000}


def test_a_range_larger_than_the_sandbox_allows_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match=r"range\(\) may make at most 100000 items"):
        render_params("{{ range(10 ** 6) | list }}", CONTEXT)


def test_mixed_text_stops_at_the_output_cap_without_building_it_all() -> None:
    template = "{% for i in range(90000) %}{{ 'x' * 1000000 }}{% endfor %}"
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"template output exceeded 10485760 characters"):
        render_params({"body": template}, CONTEXT)
    assert time.monotonic() - started < 2


def test_mixed_text_up_to_the_output_cap_renders() -> None:
    template = "{% for i in range(10) %}{{ 'x' * 1000000 }}{% endfor %}"
    assert len(render_params(template, CONTEXT)) == 10_000_000


def test_a_single_expression_passes_large_data_whole() -> None:
    big = "z" * (sandbox.MAX_OUTPUT_CHARS + 1)
    assert render_params("{{ trigger.page }}", {"trigger": {"page": big}}) is big


def test_a_render_past_until_raises_node_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "MAX_TEMPLATE_STEPS", 10**12)
    started = time.monotonic()
    with pytest.raises(NodeTimeout):
        render_params({"x": BURN}, CONTEXT, until=started + 0.2)
    assert time.monotonic() - started < 1
