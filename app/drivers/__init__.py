"""THE driver registry: node type -> driver, built-ins plus the `dualmcp.drivers` entry points.

Built-ins are lazy import paths (like kombu's TRANSPORT_ALIASES), so listing the node types
imports no driver and a driver's dependencies load only when a node of its type runs. A package
adds drivers without touching this repo:

    [project.entry-points."dualmcp.drivers"]
    slack_post = "dualmcp_slack:SlackPostDriver"

A built-in name always wins over an entry point of the same name.
"""

from __future__ import annotations

import difflib
import functools
from importlib import import_module, metadata

from pydantic import BaseModel

from app.drivers.base import Driver, NodeContext, idempotency_key
from app.errors import PermanentDriverError

__all__ = [
    "BUILTIN_DRIVERS",
    "ENTRY_POINT_GROUP",
    "Driver",
    "NodeContext",
    "UnknownDriver",
    "driver_types",
    "get_driver",
    "idempotency_key",
    "param_schemas",
]

ENTRY_POINT_GROUP = "dualmcp.drivers"

#: Node type -> "module:Class".
BUILTIN_DRIVERS: dict[str, str] = {
    "conditional": "app.drivers.conditional:ConditionalDriver",
    "transform": "app.drivers.transform:TransformDriver",
    "http_request": "app.drivers.http_request:HttpRequestDriver",
    "data_fetch": "app.drivers.http_request:DataFetchDriver",
    "webhook": "app.drivers.webhook:WebhookDriver",
    "mcp_llm": "app.drivers.mcp_llm:McpLlmDriver",
    "openai": "app.drivers.openai:OpenAIDriver",
    "ai_content_generation": "app.drivers.openai:AIContentGenerationDriver",
    "claude_ai": "app.drivers.claude:ClaudeDriver",
    "email_send": "app.drivers.email_send:EmailSendDriver",
    "twilio_sms": "app.drivers.twilio_sms:TwilioSmsDriver",
}


class UnknownDriver(PermanentDriverError):
    """A node type no registered driver runs; the message suggests the closest known one."""

    def __init__(self, node_type: str, known: list[str]) -> None:
        self.node_type = node_type
        matches = difflib.get_close_matches(node_type, known, n=1)
        self.suggestion = matches[0] if matches else None
        hint = f" Did you mean {self.suggestion}?" if self.suggestion else ""
        super().__init__(f"No such node type: {node_type}.{hint}")


@functools.cache
def registry() -> dict[str, str]:
    """Every node type -> its import path; entry points read once per process."""
    found = {ep.name: ep.value for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN_DRIVERS}


def driver_types() -> list[str]:
    """The registered node types, sorted."""
    return sorted(registry())


@functools.cache
def get_driver(node_type: str) -> Driver:
    """The (cached) driver instance for `node_type`; raises UnknownDriver."""
    path = registry().get(node_type)
    if path is None:
        raise UnknownDriver(node_type, driver_types())
    module_name, _, class_name = path.partition(":")
    driver_class = getattr(import_module(module_name), class_name)
    if not (isinstance(driver_class, type) and issubclass(driver_class, Driver)):
        raise TypeError(f"{path} (node type {node_type}) is not a Driver subclass")
    return driver_class()


def param_schemas() -> dict[str, type[BaseModel]]:
    """Every registered node type -> its Params model (for save-time validation and docs)."""
    return {node_type: get_driver(node_type).Params for node_type in driver_types()}
