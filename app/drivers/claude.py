"""The `claude_ai` node: one-shot generation with the anthropic provider."""

from __future__ import annotations

from typing import Any

from app.drivers.base import Driver, NodeContext
from app.drivers.llm_generation import GenerationParams, generate


class ClaudeDriver(Driver):
    """Generate text with Anthropic's Messages API; output {text, model, provider, usage}."""

    type = "claude_ai"
    Params = GenerationParams

    def run(self, params: GenerationParams, ctx: NodeContext) -> dict[str, Any]:
        return generate(params, ctx, self.type, "anthropic")
