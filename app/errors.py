"""The project's exceptions, in one tree so callers can catch at the level they mean.

DualMCPError
 ├── DefinitionInvalid        a workflow definition failed validation (carries every problem)
 ├── NotFound                 a workflow, run or agent id that does not exist
 ├── Conflict                 the request contradicts the stored state (a paused workflow, ...)
 ├── TemplateError            a template or condition could not be rendered
 └── DriverError              a node's driver could not do its job
      ├── RetryableDriverError   worth another attempt under the node's retry policy
      │    ├── NodeTimeout           the node ran past its timeout_s
      │    └── LLMUnavailable        an LLM provider kept failing (429, 5xx, timeout)
      └── PermanentDriverError   another attempt would fail the same way
           ├── BlockedDestination    the SSRF guard refused an address
           └── LLMRequestFailed      an LLM provider refused the request (key, model, ...)
"""

from __future__ import annotations

from typing import Any


class DualMCPError(Exception):
    """Base of every error this project raises on purpose."""


class DefinitionInvalid(DualMCPError):
    """A workflow definition failed validation; `problems` lists every one found."""

    def __init__(self, problems: list[Any]) -> None:
        self.problems = problems
        super().__init__(f"workflow definition has {len(problems)} problem(s)")


class NotFound(DualMCPError):
    """An id that names nothing stored."""


class Conflict(DualMCPError):
    """The request contradicts the stored state, e.g. running a paused workflow."""


class TemplateError(DualMCPError):
    """A template or condition failed to render; the message names the expression."""


class DriverError(DualMCPError):
    """A driver failed; the message is safe to store and show (no secrets)."""


class RetryableDriverError(DriverError):
    """A transient failure (5xx, 429, connection reset): the retry policy may try again."""


class NodeTimeout(RetryableDriverError):
    """The node ran past its timeout."""


class PermanentDriverError(DriverError):
    """A failure another attempt would repeat (4xx, invalid params)."""


class BlockedDestination(PermanentDriverError):
    """The SSRF guard refused a URL: private, loopback or metadata address not allowlisted."""


class LLMUnavailable(RetryableDriverError):
    """An LLM provider answered 429 or 5xx, or timed out, on every attempt; try again later."""


class LLMRequestFailed(PermanentDriverError):
    """An LLM provider refused the request (bad key, unknown model) or is not configured."""
