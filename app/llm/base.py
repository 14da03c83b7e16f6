"""The one interface every LLM provider implements, and how their failures are reported.

A provider turns (messages, system prompt, config) into a Completion. Retries of 429, 5xx and
timeouts are the SDKs' own (exponential backoff, Retry-After honoured); what is still failing
after them becomes LLMUnavailable (retryable) or LLMRequestFailed (permanent), with a message
that names the provider and the status but never a key.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from app.errors import DriverError, LLMRequestFailed, LLMUnavailable
from app.llm.config import LLMConfig

Role = Literal["user", "assistant", "tool"]
E = TypeVar("E", bound=BaseException)
C = TypeVar("C")

#: Longest provider error text repeated in our own message.
MAX_ERROR_DETAIL = 300

#: Key-shaped strings (OpenAI `sk-...`, Anthropic `sk-ant-...`), masked even when not ours.
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_\-*]{8,}")
_SDK_PREFIX = re.compile(r"^Error code: \d+(?: - )?")


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model. `name` already follows every provider's rules
    (`^[A-Za-z0-9_-]{1,64}$`; app/agents/tool_names.py maps other names to it and back)."""

    name: str
    description: str
    #: A JSON Schema of type object: the tool's arguments.
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """The model asks for one call of a tool; `id` pairs it with its result."""

    id: str
    name: str
    arguments: dict[str, Any]


#: The one argument of a call whose arguments were not a JSON object: the text as the model
#: sent it. The tool loop answers such a call with an error result (bad arguments), so the
#: model can retry; it never reaches a tool.
RAW_ARGUMENTS = "_raw"


def parse_tool_arguments(text: str | None) -> dict[str, Any]:
    """A call's arguments as sent on the wire (JSON text): an object, {} when empty, else
    {RAW_ARGUMENTS: text} (never raises: a model's malformed call is the model's to fix)."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {RAW_ARGUMENTS: text}
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: text}


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation; the system prompt travels separately.

    An assistant message may carry `tool_calls` (then `content` is whatever text came with
    them); a `tool` message is the result of the call `tool_call_id`, an error when `is_error`.
    Each provider writes these in its own wire format (OpenAI `tool_calls` / role `tool`,
    Anthropic `tool_use` / `tool_result` blocks).
    """

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    is_error: bool = False


@dataclass(frozen=True)
class Completion:
    """What a provider answered: the LLM nodes' output shape (DESIGN.md: HTTP API)."""

    text: str
    model: str
    provider: str
    #: Token counts as the provider reported them: input_tokens, output_tokens.
    usage: dict[str, int] = field(default_factory=dict)
    #: Calls the model asks for before it answers (only when tools were offered).
    tool_calls: tuple[ToolCall, ...] = ()

    def to_output(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "model": self.model,
            "provider": self.provider,
            "usage": dict(self.usage),
        }


class Provider(Protocol):
    """An LLM behind one call. Implementations are thread-safe and reuse their HTTP clients."""

    name: str

    def complete(
        self,
        messages: Sequence[ChatMessage],
        system: str,
        config: LLMConfig,
        tools: Sequence[ToolSpec] = (),
    ) -> Completion:
        """One model call; with `tools`, the model may answer with `tool_calls` instead."""

    def close(self) -> None:
        """Release the connections the provider opened itself (not the shared guarded client)."""


class SdkClients(Generic[C]):
    """An SDK's clients, one per server (kept for their connection pools).

    The operator's server (key None) is kept for good; servers named by configs and workflows
    (which may be templated) are kept up to `limit`, least recently used dropped first. Those
    share the runtime's SSRF-guarded client, so dropping one closes nothing.
    """

    def __init__(self, make: Callable[[str | None], C], limit: int = 32) -> None:
        self._make = make
        self._limit = limit
        self._clients: dict[str | None, C] = {}
        self._lock = threading.Lock()

    def get(self, base_url: str | None) -> C:
        with self._lock:
            client = self._clients.pop(base_url, None) or self._make(base_url)
            self._clients[base_url] = client  # most recently used last
            if len(self._clients) > self._limit:
                del self._clients[next(key for key in self._clients if key is not None)]
            return client

    def operator_client(self) -> C | None:
        """The client of the operator's server, the one to close on shutdown."""
        with self._lock:
            return self._clients.pop(None, None)


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every configured secret and every key-shaped string masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _KEY_SHAPED.sub("***", text)


def provider_error(
    provider: str, exc: Exception, *, secrets: Iterable[str | None], retries: int
) -> DriverError:
    """An SDK exception (openai and anthropic share their shapes) as one of ours."""
    ours = _cause_of_type(exc, DriverError)  # the SSRF guard refused, or capped the body
    if ours is not None:
        return ours
    secrets = list(secrets)
    status = getattr(exc, "status_code", None)
    detail = redact(_detail(exc), secrets)[:MAX_ERROR_DETAIL]
    after = f" after {retries} retr{'y' if retries == 1 else 'ies'}"
    if isinstance(status, int):
        message = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
        if status in (408, 409, 429) or status >= 500:
            return LLMUnavailable(message + after)
        return LLMRequestFailed(message)
    name = type(exc).__name__
    if "Timeout" in name:
        return LLMUnavailable(f"{provider}: the request timed out{after}")
    if "Connection" in name:
        return LLMUnavailable(f"{provider}: could not connect{after}: {detail}")
    return LLMRequestFailed(f"{provider}: {name}: {detail}")


def _detail(exc: Exception) -> str:
    """The provider's own error message when its body has one, else the exception's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    text = str(getattr(exc, "message", None) or exc)
    return _SDK_PREFIX.sub("", text)  # "Error code: 503 - ..." repeats the status we state


def _cause_of_type(exc: BaseException, kind: type[E]) -> E | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None
