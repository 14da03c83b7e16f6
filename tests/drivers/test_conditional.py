"""The conditional node: a bool result and the branch it picks."""

from __future__ import annotations

import pytest

from app.drivers.conditional import ConditionalDriver
from app.errors import TemplateError
from tests.drivers.conftest import MakeContext

driver = ConditionalDriver()
CONTEXT = {"trigger": {"tier": "gold"}, "nodes": {"fetch": {"json": {"score": 91}}}}


def run(condition: str | bool, make_ctx: MakeContext) -> dict[str, object]:
    params = ConditionalDriver.Params(condition=condition)
    return driver.run(params, make_ctx(template_context=CONTEXT))


def test_true_expression_takes_then(make_ctx: MakeContext) -> None:
    assert run("nodes.fetch.json.score >= 80", make_ctx) == {"result": True, "branch": "then"}


def test_false_expression_takes_else(make_ctx: MakeContext) -> None:
    assert run("trigger.tier == 'silver'", make_ctx) == {"result": False, "branch": "else"}


@pytest.mark.parametrize("value", [True, False])
def test_an_already_rendered_bool_is_used_as_is(value: bool, make_ctx: MakeContext) -> None:
    assert run(value, make_ctx)["result"] is value


def test_a_string_param_stays_an_expression() -> None:
    assert ConditionalDriver.Params(condition="true").condition == "true"


def test_an_undefined_name_is_a_template_error(make_ctx: MakeContext) -> None:
    with pytest.raises(TemplateError):
        run("nodes.missing.json.score > 1", make_ctx)
