"""The `echo` provider: offline and deterministic, for demos and tests. It calls no LLM and
says so in every answer, so nobody mistakes its text for a model's."""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from app.config import Settings
from app.llm.base import ChatMessage, Completion
from app.llm.config import LLMConfig

PREFIX = "[echo provider, no LLM called]"


class EchoProvider:
    """Answers with the last user message; usage counts words, in and out."""

    name = "echo"

    def __init__(self, settings: Settings | None = None, http: httpx.Client | None = None) -> None:
        pass  # the same constructor as the other providers; it needs neither

    def complete(
        self, messages: Sequence[ChatMessage], system: str, config: LLMConfig
    ) -> Completion:
        last = next((m.content for m in reversed(messages) if m.role == "user"), "")
        text = f"{PREFIX} {last}"
        words_in = len(system.split()) + sum(len(m.content.split()) for m in messages)
        usage = {"input_tokens": words_in, "output_tokens": len(text.split())}
        return Completion(text, config.model, self.name, usage)

    def close(self) -> None:
        pass
