"""The one interface every LLM provider implements, and how their failures are reported.

A provider turns (messages, system prompt, config) into a Completion. Retries of 429, 5xx and
timeouts are the SDKs' own (exponential backoff, Retry-After honoured); what is still failing
after them becomes LLMUnavailable (retryable) or LLMRequestFailed (permanent), with a message
that names the provider and the status but never a key.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, Protocol, TypeVar

from app.errors import DriverError, LLMRequestFailed, LLMUnavailable
from app.llm.config import LLMConfig

Role = Literal["user", "assistant"]
E = TypeVar("E", bound=BaseException)
C = TypeVar("C")

#: Longest provider error text repeated in our own message.
MAX_ERROR_DETAIL = 300

#: Key-shaped strings (OpenAI `sk-...`, Anthropic `sk-ant-...`), masked even when not ours.
_KEY_SHAPED = re.compile(r"\bsk-[A-Za-z0-9_\-*]{8,}")
_SDK_PREFIX = re.compile(r"^Error code: \d+(?: - )?")


@dataclass(frozen=True)
class ChatMessage:
    """One message of a conversation; the system prompt travels separately."""

    role: Role
    content: str


@dataclass(frozen=True)
class Completion:
    """What a provider answered: the LLM nodes' output shape (DESIGN.md: HTTP API)."""

    text: str
    model: str
    provider: str
    #: Token counts as the provider reported them: input_tokens, output_tokens.
    usage: dict[str, int] = field(default_factory=dict)

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
        self, messages: Sequence[ChatMessage], system: str, config: LLMConfig
    ) -> Completion: ...

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
