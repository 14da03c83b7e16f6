"""The `openai` and `ai_content_generation` nodes: one-shot generation, no memory
(app/drivers/llm_generation.py)."""

from __future__ import annotations

from typing import Any

from app.drivers.base import Driver, NodeContext
from app.drivers.llm_generation import GenerationParams, generate
from app.llm.config import ProviderName


class OpenAIDriver(Driver):
    """Generate text with OpenAI or any compatible server; output {text, model, provider, usage}."""

    type = "openai"
    Params = GenerationParams

    def run(self, params: GenerationParams, ctx: NodeContext) -> dict[str, Any]:
        return generate(params, ctx, self.type, "openai")


class AIContentGenerationParams(GenerationParams):
    #: openai, anthropic or echo; the workflow's agent's provider (else openai) when left out.
    provider: ProviderName | None = None


class AIContentGenerationDriver(Driver):
    """Generate content with the provider named in params, or the workflow's agent's."""

    type = "ai_content_generation"
    Params = AIContentGenerationParams

    def run(self, params: AIContentGenerationParams, ctx: NodeContext) -> dict[str, Any]:
        return generate(params, ctx, self.type, params.provider)
