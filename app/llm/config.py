"""An LLM call's settings: provider, model, sampling, and an optional compatible server.

Agents store one as their `llm_config` (DESIGN.md: Agents); one-shot LLM nodes build one from
their params. It lives here, beside the providers that read it, so `app.llm` needs nothing else.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

ProviderName = Literal["openai", "anthropic", "echo"]

#: The model used when a config names none: a small, cheap one per provider.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "echo": "echo",
}


def _require_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


HttpUrlStr = Annotated[str, AfterValidator(_require_http_url)]


class LLMConfig(BaseModel):
    """Which provider and model answer, and how."""

    model_config = ConfigDict(extra="forbid")

    provider: ProviderName = "echo"
    #: Empty means the provider's default (DEFAULT_MODELS).
    model: str = Field("", max_length=200)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(1024, gt=0, le=1_000_000)
    #: An OpenAI- or Anthropic-compatible server; requests to it go through the SSRF guard.
    base_url: HttpUrlStr | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _default_model(self) -> LLMConfig:
        if not self.model:
            self.model = DEFAULT_MODELS[self.provider]
        return self
