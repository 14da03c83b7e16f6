"""What an agent is configured with: its LLM settings and its personality (DESIGN.md: Agents).

Both are stored as JSON in `agent_mcps`; these models are the one place they are validated, so
the API, the CLI's demo and (later) the prompt builder agree on the shape.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

Provider = Literal["openai", "anthropic", "echo"]

#: The model used when a config names none: a small, cheap one per provider.
DEFAULT_MODELS: dict[str, str] = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-3-5-haiku-latest",
    "echo": "echo",
}

#: Agent ids are used in URLs and in workflow definitions, so they stay slug-safe.
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


def _require_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


HttpUrlStr = Annotated[str, AfterValidator(_require_http_url)]


class LLMConfig(BaseModel):
    """Which provider and model answer for the agent, and how."""

    model_config = ConfigDict(extra="forbid")

    provider: Provider = "echo"
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


def _trait_value(value: Any) -> Any:
    """One clear message instead of one per member of the union."""
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise ValueError("must be a string, a number, a boolean or a list of strings")


#: Extra personality entries: short facts a prompt can state.
TraitValue = Annotated[
    str | int | float | bool | list[str],
    PlainValidator(_trait_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string"},
                {"type": "number"},
                {"type": "boolean"},
                {"type": "array", "items": {"type": "string"}},
            ]
        }
    ),
]


class PersonalityTraits(BaseModel):
    """Who the agent is; becomes its system prompt. Named fields plus free extra entries."""

    model_config = ConfigDict(extra="allow")

    role: str | None = Field(None, max_length=2000)
    tone: str | None = Field(None, max_length=2000)
    style: str | None = Field(None, max_length=2000)
    traits: list[str] = Field(default_factory=list, max_length=100)
    instructions: str | None = Field(None, max_length=20_000)

    __pydantic_extra__: dict[str, TraitValue] = Field(init=False)


def slugify(text: str, *, max_length: int = 48) -> str:
    """`Sales Assistant!` -> `sales-assistant`; empty when nothing slug-safe is left."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:max_length].strip("-")
