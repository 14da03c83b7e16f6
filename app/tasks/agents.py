"""The agent task: one conversation turn on a worker, its reply kept for the waiting front end.

`agent_process` is the one task with a result (Celery's result backend: Redis in production,
in-process in standalone mode); the front end waits on it through `CeleryAgentTasks`, which
sends it by name through the front end's own Celery app.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from celery import Celery, shared_task
from celery.result import AsyncResult

from app.agents.replies import TaskOutcome, run_turn
from app.tasks.celery_app import AGENT_PROCESS, AGENTS_QUEUE
from app.tasks.runtime import get_runtime

#: Our own state, stored before the message is sent: Celery says PENDING for unknown ids too.
QUEUED = "QUEUED"
#: How often the waiting front end looks for the result, at most (it starts faster).
_POLL_MAX_S = 0.25


@shared_task(name=AGENT_PROCESS, bind=True, ignore_result=False, track_started=True)
def agent_process(self: Any, agent_id: str, session_id: str, message: str) -> dict[str, Any]:
    """Answer one message as the agent; the result is the reply or the error, as JSON."""
    done = self.AsyncResult(self.request.id)
    if done.state == "SUCCESS":  # a redelivery after the turn was stored: do not store it twice
        result: dict[str, Any] = done.result
        return result
    # The task id is the turn's id: a redelivery after a worker died resumes the turn from its
    # last recorded tool result (acks_late, as nodes are).
    return run_turn(get_runtime().agents, agent_id, session_id, message, turn_id=self.request.id)


class CeleryAgentTasks:
    """AgentTasks over Celery: publish to the agents queue, read the result backend."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def submit(self, agent_id: str, session_id: str, message: str) -> str:
        task_id = str(uuid.uuid4())
        whom = {"agent_id": agent_id, "session_id": session_id}
        self.celery.backend.store_result(task_id, whom, QUEUED)
        self.celery.send_task(
            AGENT_PROCESS, (agent_id, session_id, message), task_id=task_id, queue=AGENTS_QUEUE
        )
        return task_id

    def outcome(self, task_id: str, wait_s: float) -> TaskOutcome:
        # Polls the stored state rather than subscribing: safe in a threaded web worker.
        deadline = time.monotonic() + wait_s
        pause = 0.02
        while True:
            outcome = self._read(task_id)
            if outcome.state in ("done", "unknown") or time.monotonic() >= deadline:
                return outcome
            time.sleep(min(pause, max(deadline - time.monotonic(), 0)))
            pause = min(pause * 2, _POLL_MAX_S)

    def _read(self, task_id: str) -> TaskOutcome:
        result: AsyncResult[Any] = AsyncResult(task_id, app=self.celery)
        state = result.state
        if state == "SUCCESS":
            value = result.result
            return TaskOutcome("done", value if isinstance(value, dict) else None)
        if state in ("FAILURE", "REVOKED"):
            error = {"status": 500, "code": "internal_error", "message": "the agent task failed"}
            return TaskOutcome("done", {"error": error})
        if state == QUEUED:
            whom = result.result if isinstance(result.result, dict) else {}
            return TaskOutcome("queued", None, whom.get("agent_id"), whom.get("session_id"))
        if state in ("STARTED", "RETRY"):
            # result_extended: the task's arguments (agent_id, session_id, message) are on record
            args = [*(result.args or ()), None, None]
            return TaskOutcome("running", None, args[0], args[1])
        return TaskOutcome("unknown")  # PENDING: never queued here, or its result expired
