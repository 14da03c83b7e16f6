"""One-shot generation, shared by the openai, ai_content_generation and claude_ai nodes.

The LLM config is the workflow's agent's (when it names one and the provider matches), with
the node's params laid over it. With no key and no server configured for the provider, the
offline echo provider answers instead, and the output says so (`"provider": "echo"`), as the
email and SMS nodes fall back to their outbox (DESIGN.md: Drivers).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.agents.profiles import AgentProfile
from app.agents.service import AgentService
from app.drivers.base import NodeContext
from app.errors import NotFound, PermanentDriverError
from app.llm import ChatMessage, LLMConfig
from app.llm.config import HttpUrlStr, ProviderName


class GenerationParams(BaseModel):
    """A prompt and, optionally, the settings that override the workflow's agent's."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=200_000)
    #: The system prompt; the workflow's agent's personality when left out.
    system: str | None = Field(None, max_length=50_000)
    model: str | None = Field(None, min_length=1, max_length=200)
    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, gt=0, le=1_000_000)
    #: A compatible server; reached through the SSRF guard like every URL a workflow names.
    base_url: HttpUrlStr | None = Field(None, max_length=2000)


def require_agents(ctx: NodeContext, node_type: str) -> AgentService:
    if ctx.agents is None:
        raise PermanentDriverError(f"{node_type}: no LLM service is wired into this process")
    return ctx.agents


def generate(
    params: GenerationParams, ctx: NodeContext, node_type: str, provider: ProviderName | None
) -> dict[str, Any]:
    """Ask once, with no memory; `provider` None means the agent's (or openai)."""
    agents = require_agents(ctx, node_type)
    profile = _workflow_agent(agents, ctx.agent_id)
    config = resolve_config(params, profile, provider)
    if not agents.llm.configured(config):
        config = LLMConfig(provider="echo", temperature=config.temperature)
    system = params.system
    if system is None:
        system = profile.system_prompt() if profile is not None else ""
    completion = agents.llm.complete([ChatMessage("user", params.prompt)], system, config)
    return completion.to_output()


def resolve_config(
    params: GenerationParams, profile: AgentProfile | None, provider: ProviderName | None
) -> LLMConfig:
    """The agent's config when its provider is the one asked for, then the params over it."""
    base = profile.llm_config if profile is not None else None
    chosen = provider or (base.provider if base is not None else "openai")
    fields: dict[str, Any] = {}
    if base is not None and base.provider == chosen:
        fields = base.model_dump(exclude_none=True)
    fields["provider"] = chosen
    for name in ("model", "temperature", "max_tokens", "base_url"):
        value = getattr(params, name)
        if value is not None:
            fields[name] = value
    return LLMConfig.model_validate(fields)


def _workflow_agent(agents: AgentService, agent_id: str | None) -> AgentProfile | None:
    if agent_id is None:
        return None
    try:
        return agents.profiles.get(agent_id)
    except NotFound:
        return None  # a deleted agent: its workflows keep running without one
