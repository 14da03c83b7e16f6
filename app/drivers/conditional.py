"""The `conditional` node: picks the `then` or the `else` branch."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.drivers.base import Driver, NodeContext
from app.engine.templating import evaluate_condition


class ConditionalDriver(Driver):
    """Evaluate a Jinja2 sandbox expression; pure, so it may run inline in the previous task."""

    type = "conditional"
    inline = True
    raw_params = frozenset({"condition"})

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        #: An expression such as `nodes.fetch.json.score >= 80` (or the same inside `{{ }}`),
        #: evaluated here and never rendered first; a literal bool is allowed too.
        condition: str | bool

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        result = evaluate_condition(params.condition, ctx.template_context)
        return {"result": result, "branch": "then" if result else "else"}
