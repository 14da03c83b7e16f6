"""The `transform` node: shapes data for later nodes, like n8n's Set node."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.drivers.base import Driver, NodeContext


class TransformDriver(Driver):
    """Output the `values` param as rendered by the task: named results for later templates."""

    type = "transform"
    inline = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        #: Output name -> value; templates in them are rendered before the driver runs.
        values: dict[str, Any]

    def run(self, params: Params, ctx: NodeContext) -> dict[str, Any]:
        return dict(params.values)
