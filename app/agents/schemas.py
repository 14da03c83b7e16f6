"""What an agent is configured with: its LLM settings, its personality and its tools
(DESIGN.md: Agents; Agents that act: tools and MCP).

All are stored as JSON in `agent_mcps`; these models are the one place they are validated, so
the API, the CLI's demo, the prompt builder and the tool loop agree on the shape. Checks that need
the database (a workflow tool names a workflow with a `tool` block) live in `app.agents.store`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    model_serializer,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.credentials import NAME_PATTERN as CREDENTIAL_NAME_PATTERN
from app.llm.config import DEFAULT_MODELS, LLMConfig, ProviderName

__all__ = [
    "AGENT_ID_PATTERN",
    "ASK_TOOL_NAME_PATTERN",
    "DEFAULT_MODELS",
    "MAX_TOOLS",
    "SESSION_ID_MAX",
    "SESSION_ID_PATTERN",
    "AgentTool",
    "AgentTools",
    "LLMConfig",
    "McpServerTool",
    "PersonalityTraits",
    "ProviderName",
    "WorkflowTool",
    "ask_tool_name",
    "dump_tools",
    "parse_tools",
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


#: An agent calls at most this many tool sources (workflows and MCP servers): each one's tools
#: are sent to the model on every request, and a long list costs tokens and confuses the model.
MAX_TOOLS = 32

#: Remote tool names an `allow` list may hold: MCP's tool-name characters (SEP-986).
REMOTE_TOOL_NAME_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"

#: The tool an exposed agent is served as, `ask_<agent_id>`, must be a valid tool name for MCP
#: clients and for OpenAI's and Anthropic's tool calling alike.
ASK_TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


def ask_tool_name(agent_id: str) -> str:
    """The MCP tool an agent with `expose_as_tool` is served as."""
    return f"ask_{agent_id}"


def _require_mcp_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if "@" in parts.netloc:
        # A key in the URL would be shown by GET and logged; it belongs in a credential.
        raise ValueError("must not hold credentials; name a stored credential instead")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise ValueError("has an invalid port") from None
    if any(char.isspace() for char in value):
        raise ValueError("must not contain whitespace")
    return value


McpUrl = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_require_mcp_url)]
RemoteToolName = Annotated[str, StringConstraints(pattern=REMOTE_TOOL_NAME_PATTERN)]


def _unique_names(names: list[str] | None) -> list[str] | None:
    if names is not None and len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"names a tool more than once: {', '.join(repeated)}")
    return names


class WorkflowTool(BaseModel):
    """A workflow the agent may run as a tool; the workflow's `tool` block describes it."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["workflow"]
    workflow_id: str = Field(min_length=1, max_length=128)

    @property
    def identity(self) -> str:
        return f"workflow {self.workflow_id!r}"


class McpServerTool(BaseModel):
    """The tools of a remote MCP server (Streamable HTTP), all or the `allow`ed ones.

    `credential` names one of the agent's stored credentials: its value is sent as a Bearer
    token, or as `{"header", "value"}`. The URL goes through the SSRF guard when it is called.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["mcp"]
    url: McpUrl
    credential: str | None = Field(None, pattern=CREDENTIAL_NAME_PATTERN)
    allow: Annotated[
        list[RemoteToolName] | None,
        Field(min_length=1, max_length=256),
        AfterValidator(_unique_names),
    ] = None

    @property
    def identity(self) -> str:
        parts = urlsplit(self.url)
        # Scheme and host are case-insensitive: `HTTPS://Example.com/mcp` is the same server.
        return f"mcp {parts._replace(scheme=parts.scheme.lower(), netloc=parts.netloc.lower())}"

    @model_serializer(mode="wrap")
    def _omit_unset_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """What was written, no nulls: the stored JSON and the API show the entry as given."""
        return {name: value for name, value in handler(self).items() if value is not None}


AgentTool = Annotated[WorkflowTool | McpServerTool, Field(discriminator="type")]


def _checked_entries(value: Any, handler: ValidatorFunctionWrapHandler) -> list[AgentTool]:
    """The entries, each problem located at its entry (`tools.1.url`), a repeat included."""
    try:
        tools: list[AgentTool] = handler(value)
    except ValidationError as exc:
        raise _without_union_tags(exc) from None
    first: dict[str, int] = {}
    problems: list[InitErrorDetails] = []
    for index, tool in enumerate(tools):
        seen = first.setdefault(tool.identity, index)
        if seen != index:
            field = "workflow_id" if isinstance(tool, WorkflowTool) else "url"
            problems.append(
                InitErrorDetails(
                    type=PydanticCustomError(
                        "duplicate_tool", "repeats entry {first}", {"first": seen}
                    ),
                    loc=(index, field),
                    input=getattr(tool, field),
                )
            )
    if problems:
        # Raised from a validator, pydantic prefixes each location with the field's own.
        raise ValidationError.from_exception_data("tools", problems)
    return tools


def _without_union_tags(exc: ValidationError) -> ValidationError:
    """pydantic puts the matched tag in the location (`1.mcp.url`); clients know the entry by
    its index alone, as the path into the JSON they sent (`1.url`)."""
    kinds = ("workflow", "mcp")
    problems = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        if len(loc) >= 2 and isinstance(loc[0], int) and loc[1] in kinds:
            loc = (loc[0], *loc[2:])
        message = error["msg"]
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = "type must be 'workflow' or 'mcp'"
        problems.append(
            InitErrorDetails(
                type=PydanticCustomError(error["type"], message),
                loc=loc,
                input=error["input"],
            )
        )
    return ValidationError.from_exception_data(exc.title, problems)


#: An agent's `tools`: workflows and remote MCP servers, each once, at most MAX_TOOLS.
AgentTools = Annotated[
    list[AgentTool], Field(max_length=MAX_TOOLS), WrapValidator(_checked_entries)
]

_TOOLS = TypeAdapter(AgentTools)


def parse_tools(stored: Any) -> list[AgentTool]:
    """The stored JSON list as models (ValidationError when it is not a valid list)."""
    return _TOOLS.validate_python(stored if stored is not None else [])


def dump_tools(tools: Sequence[AgentTool]) -> list[dict[str, Any]]:
    """The list as stored in `agent_mcps.tools` and shown by the API."""
    return [tool.model_dump(mode="json") for tool in tools]
