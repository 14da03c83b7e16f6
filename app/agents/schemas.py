"""What an agent is configured with: its LLM settings and its personality (DESIGN.md: Agents).

Both are stored as JSON in `agent_mcps`; these models are the one place they are validated, so
the API, the CLI's demo and (later) the prompt builder agree on the shape.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from app.llm.config import DEFAULT_MODELS, LLMConfig, ProviderName

__all__ = [
    "AGENT_ID_PATTERN",
    "DEFAULT_MODELS",
    "SESSION_ID_MAX",
    "SESSION_ID_PATTERN",
    "LLMConfig",
    "PersonalityTraits",
    "ProviderName",
    "slugify",
]

#: Agent ids are used in URLs and in workflow definitions, so they stay slug-safe.
AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"

#: Session ids name a conversation; they become part of Redis keys, so no spaces or controls.
SESSION_ID_PATTERN = r"^[A-Za-z0-9_.:@+\-]+$"
SESSION_ID_MAX = 200


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
