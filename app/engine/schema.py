"""The workflow definition (DESIGN.md: Workflow definition) as pydantic models.

The JSON shape is the contract users write by hand, so field names follow DESIGN.md exactly
(`else` included, through an alias). Strict, as the JSON types in the OpenAPI document say:
`true` is no number of attempts, `1` no `jitter`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from referencing import Registry

from app.engine.cron import InvalidSchedule, check_cron, check_timezone

NodeStatus = Literal[
    "pending", "running", "retrying", "succeeded", "failed", "skipped", "cancelled"
]
#: Node statuses after which a node never runs again in this run.
TERMINAL_NODE_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "skipped", "cancelled"})
RunStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_RUN_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
#: Run statuses in which nodes may still be claimed and routed.
ACTIVE_RUN_STATUSES: tuple[str, ...] = ("queued", "running")
#: The one node type the engine knows by name: it routes with `then` / `else` instead of `next`.
CONDITIONAL_NODE_TYPE = "conditional"


class RetryPolicy(BaseModel):
    """How often a node is attempted, and how long to wait between attempts."""

    model_config = ConfigDict(extra="forbid", strict=True)

    max_attempts: int = Field(1, ge=1, le=100)
    backoff_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(300.0, ge=0)
    jitter: bool = True


class NodeDefinition(BaseModel):
    """One node: a driver type, its params (templates allowed) and where to go next."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")
    type: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    next: str | list[str] | None = None
    then: str | None = None
    else_: str | None = Field(None, alias="else")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_s: float | None = Field(None, gt=0, le=86_400)
    on_error: Literal["fail", "continue"] = "fail"

    @field_validator("next", mode="before")
    @classmethod
    def _next_is_node_ids(cls, value: Any) -> Any:
        """One clear message instead of one per member of the `str | list[str]` union."""
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        raise ValueError("must be a node id or a list of node ids")

    @property
    def next_ids(self) -> list[str]:
        """Successors through `next` (fan-out when a list)."""
        if self.next is None:
            return []
        return [self.next] if isinstance(self.next, str) else list(self.next)

    @property
    def successor_ids(self) -> list[str]:
        """Every node this one may route to, in definition order, without duplicates."""
        ids = [*self.next_ids, *(i for i in (self.then, self.else_) if i is not None)]
        return list(dict.fromkeys(ids))


#: How a webhook trigger authenticates its sender (app/web/signatures.py holds one verifier per
#: name): a signature by one of the trigger's secrets, or, for `token`, the workflow's own trigger
#: token (made when the workflow is saved; no secrets).
SignatureScheme = Literal["standard", "github", "stripe", "slack", "twilio", "token"]


class TriggerConfig(BaseModel):
    """How runs start: a signed webhook, a cron schedule, or by hand. Details are the web's job."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: Literal["webhook", "schedule", "manual"] = "manual"
    #: How a webhook's signature is checked (app/web/signatures.py).
    scheme: SignatureScheme = "standard"
    #: A webhook's active signing secrets; several at once while one is rotated out. A Slack
    #: signing secret, a Twilio auth token; none for `token`.
    secrets: list[str] = Field(default_factory=list, validate_default=True)
    #: A schedule's cron expression: five fields or a nickname such as "@hourly".
    cron: str | None = Field(None, validate_default=True)
    #: The IANA time zone the cron expression is read in.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        try:
            return check_timezone(timezone)
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None

    @field_validator("cron")
    @classmethod
    def _schedule_has_cron(cls, cron: str | None, info: ValidationInfo) -> str | None:
        """Caught at save time rather than by a beat that silently never fires."""
        if cron is None:
            if info.data.get("type") == "schedule":
                raise PydanticCustomError(  # "missing": the problem's path names the field
                    "missing", 'a schedule trigger needs a cron expression, e.g. "*/5 * * * *"'
                )
            return None
        try:
            return check_cron(cron)
        except InvalidSchedule as exc:
            raise ValueError(str(exc)) from None

    @field_validator("secrets")
    @classmethod
    def _webhook_is_signed(cls, secrets: list[str], info: ValidationInfo) -> list[str]:
        """Caught at save time rather than as a 401 on every delivery. Never echoes a secret."""
        if info.data.get("type") != "webhook":
            return secrets
        if info.data.get("scheme") == "token":
            if secrets:
                raise ValueError(
                    "a token trigger takes no secrets: its token is made when the workflow is "
                    "saved, and shown in that answer"
                )
            return secrets
        if not secrets:
            raise ValueError("a webhook trigger needs at least one secret")
        for index, secret in enumerate(secrets):
            if not secret.strip():
                raise ValueError(f"secret #{index} is empty")
            if info.data.get("scheme") == "standard" and not _is_standard_secret(secret):
                raise ValueError(
                    f"secret #{index} is not a Standard Webhooks secret (whsec_ then base64)"
                )
        return secrets


def _is_standard_secret(secret: str) -> bool:
    encoded = secret.removeprefix("whsec_")
    try:
        return len(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)) > 0
    except binascii.Error:
        return False


#: MCP's and OpenAI's rules for a tool name.
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Names /mcp serves itself: a run's status, and one `ask_<agent_id>` per exposed agent.
RESERVED_TOOL_NAMES: frozenset[str] = frozenset({"get_run"})
RESERVED_TOOL_PREFIX = "ask_"
MAX_TOOL_DESCRIPTION = 1024
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # fullmatch: `$` would let a "\n" through
#: What `validator_for` answers for an unknown `$schema` (a marker, never called).
_UNKNOWN_DIALECT: Any = object()


def is_reserved_tool_name(name: str) -> bool:
    return name in RESERVED_TOOL_NAMES or name.startswith(RESERVED_TOOL_PREFIX)


def input_schema_dialect(schema: Mapping[str, Any]) -> type[Validator] | None:
    """The validator class for the schema's `$schema` (2020-12 when absent); None if unknown."""
    if "$schema" not in schema:
        return Draft202012Validator
    if not isinstance(schema["$schema"], str):
        return None
    # An explicit default: an unknown dialect is ours to refuse, not a DeprecationWarning.
    known = validator_for(schema, default=_UNKNOWN_DIALECT)
    return None if known is _UNKNOWN_DIALECT else known


def compile_input_schema(schema: Mapping[str, Any]) -> Validator:
    """A validator for a (save-time checked) input schema. Its registry is empty: a `$ref` is
    resolved inside the schema or not at all, never fetched (jsonschema's default registry
    would retrieve remote URLs, an SSRF door; and the engine does no I/O)."""
    cls = input_schema_dialect(schema) or Draft202012Validator
    return cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)


class ToolBlock(BaseModel):
    """A workflow served as a tool (at /mcp, to agents): what a model reads to decide to call it,
    and the JSON Schema its input must match. The save-time checks the pydantic model cannot
    make (reserved names, the schema itself) are in app/engine/validation.py."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str = Field(min_length=1, max_length=MAX_TOOL_DESCRIPTION)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object"})

    @field_validator("name", mode="before")
    @classmethod
    def _name_is_a_tool_name(cls, value: Any) -> Any:
        """One clear message instead of the bare pattern."""
        if isinstance(value, str) and not _TOOL_NAME.fullmatch(value):
            raise ValueError("a tool name is 1 to 64 letters, digits, '_' or '-'")
        return value

    @field_validator("description")
    @classmethod
    def _description_says_something(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a tool needs a description: the model reads it to choose the tool")
        return value

    @cached_property
    def input_validator(self) -> Validator:
        """Compiled once per parsed definition (definitions are cached per process)."""
        return compile_input_schema(self.input_schema)


#: What a workflow id may hold: it is used in URLs (app/web/api.py refuses others with a 404).
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class WorkflowDefinition(BaseModel):
    """A whole workflow as stored in `workflows.workflow_json`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    workflow_id: str = Field(min_length=1, max_length=128, pattern=WORKFLOW_ID_PATTERN)
    agent_id: str | None = None
    name: str = ""
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    start: str | None = None
    nodes: list[NodeDefinition] = Field(min_length=1)
    #: Present when the workflow is also a tool (DESIGN.md: Agents that act).
    tool: ToolBlock | None = None

    @property
    def entry_id(self) -> str:
        """`start` when given, else the first node (DESIGN.md)."""
        return self.start or self.nodes[0].id

    @cached_property
    def has_fan_out(self) -> bool:
        """True when some node starts several successors at once (parallel branches)."""
        return any(len(node.next_ids) > 1 for node in self.nodes)

    @cached_property
    def nodes_by_id(self) -> dict[str, NodeDefinition]:
        """The nodes by id (the first of duplicates; validation refuses duplicates anyway)."""
        by_id: dict[str, NodeDefinition] = {}
        for node in self.nodes:
            by_id.setdefault(node.id, node)
        return by_id

    def node(self, node_id: str) -> NodeDefinition:
        """The node with this id; KeyError if none (validation guarantees it for stored ones)."""
        return self.nodes_by_id[node_id]
