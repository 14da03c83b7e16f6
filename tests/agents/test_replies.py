"""A turn's outcome as the worker stores it: a reply, or an error shaped for HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from app.agents.replies import run_turn
from app.errors import LLMRequestFailed, LLMUnavailable, NotFound


class FailingAgents:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def converse(self, *_args: Any, **_kwargs: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (NotFound("no agent with id 'x'"), 404, "not_found"),
        (LLMUnavailable("openai: HTTP 429 after 3 retries"), 503, "llm_unavailable"),
        (LLMRequestFailed("openai: HTTP 401: bad key"), 502, "llm_failed"),
        (KeyError("bug"), 500, "internal_error"),
    ],
)
def test_failures_become_json_errors_with_a_fitting_status(
    error: Exception, status: int, code: str
) -> None:
    result = run_turn(FailingAgents(error), "x", "s", "hi")  # type: ignore[arg-type]

    assert result["error"]["status"] == status
    assert result["error"]["code"] == code
