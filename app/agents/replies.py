"""How an agent's reply travels from the worker that made it to the front end that waits.

The worker runs `run_turn` and stores what it returns (a reply, or an error shaped for HTTP)
as the task's result; the front end reads it through `AgentTasks`, which the Celery side
implements (app/tasks/agents.py) and tests replace.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.agents.service import AgentService
from app.errors import DriverError, NotFound, RetryableDriverError

log = logging.getLogger(__name__)

#: unknown: no such task (or its result expired); queued: not started; running; done.
TaskState = Literal["unknown", "queued", "running", "done"]


@dataclass(frozen=True)
class TaskOutcome:
    state: TaskState
    #: When done: {"reply": {...}} or {"error": {"status", "code", "message"}}.
    result: dict[str, Any] | None = None
    #: Whom the message was for, when the task's record says.
    agent_id: str | None = None
    session_id: str | None = None


class AgentTasks(Protocol):
    """Runs conversation turns on a worker and reports on them."""

    def submit(self, agent_id: str, session_id: str, message: str) -> str:
        """Queue a turn; returns its task id."""

    def outcome(self, task_id: str, wait_s: float) -> TaskOutcome:
        """The turn's state, waiting up to `wait_s` for it to be done."""


def run_turn(
    agents: AgentService,
    agent_id: str,
    session_id: str,
    message: str,
    turn_id: str | None = None,
) -> dict[str, Any]:
    """One turn, its failure included: never raises, so the result is always JSON. A turn id
    seen before (a redelivered task) resumes that turn."""
    try:
        reply = agents.converse(agent_id, session_id, message, turn_id=turn_id)
    except NotFound as exc:
        return _error(404, "not_found", str(exc))
    except RetryableDriverError as exc:
        return _error(503, "llm_unavailable", str(exc))
    except DriverError as exc:
        return _error(502, "llm_failed", str(exc))
    except Exception as exc:
        log.exception("agent %s failed on a message", agent_id)
        return _error(500, "internal_error", f"internal error: {type(exc).__name__}")
    return {"reply": reply.to_dict()}


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message}}
