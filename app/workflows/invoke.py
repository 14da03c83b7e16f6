"""Run one leased node's driver: render params, validate them, call the driver, classify errors.

All of it within the node's timeout: a template that loops too long fails its node like a slow
driver does (NodeTimeout, under the retry policy), whether the node was leased from the queue or
is a control node run inline in another node's completion (`run_control_node` below).

No database session is open while this runs (DESIGN.md Execution 2; Redash's executor does the
same "to prevent holding a connection for a long time").
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from app import drivers, metrics, time_budget
from app.config import Settings
from app.credentials import CredentialVault
from app.drivers.base import Driver, NodeContext
from app.engine.templating import render_params
from app.errors import DriverError, NodeTimeout, RetryableDriverError, TemplateError
from app.logs import log_context
from app.messaging.ledger import EffectLedger
from app.workflows.completion import complete_with_retry
from app.workflows.deadlines import ThreadDeadline
from app.workflows.execution import Lease, Outcome, lease_node, node_timeout_s
from app.workflows.handback import HandBack, hand_back_leases, interruptible
from app.workflows.runs import NodeRef

if TYPE_CHECKING:
    from app.agents.service import AgentService

log = logging.getLogger(__name__)


def invoke_driver(
    lease: Lease,
    settings: Settings,
    http: httpx.Client,
    agents: AgentService | None = None,
    *,
    effects: EffectLedger | None = None,
    credentials: CredentialVault | None = None,
) -> Outcome:
    """The node's outcome; never raises for a failure of the node itself."""
    node = lease.node
    timeout_s = node_timeout_s(lease.definition, lease.node_id, settings)
    context = lease.template_context()
    try:
        driver = drivers.get_driver(node.type)
        with deadline(timeout_s) as alarmed, interruptible():
            rendered = render_node_params(driver, node.params, context, timeout_s, alarmed)
            params = driver.Params.model_validate(rendered)
            ctx = NodeContext(
                run_id=lease.run_id,
                node_id=lease.node_id,
                workflow_id=lease.workflow_id,
                attempt=lease.attempt,
                timeout_s=timeout_s,
                settings=settings,
                http=http,
                template_context=context,
                agent_id=lease.definition.agent_id,
                agents=agents,
                effects=effects,
                credentials=credentials,
            )
            output = driver.run(params, ctx)
        json.dumps(output)  # fail here, not in the database, if a driver returns the wrong thing
    except NodeTimeout as exc:
        return Outcome(
            succeeded=False, error=str(exc) or f"timed out after {timeout_s:g}s", retryable=True
        )
    except RetryableDriverError as exc:
        return Outcome(succeeded=False, error=str(exc), retryable=True)
    except (DriverError, TemplateError) as exc:
        return Outcome(succeeded=False, error=str(exc))
    except ValidationError as exc:
        return Outcome(succeeded=False, error=describe_validation_error(exc))
    except Exception as exc:  # a bug in a driver must fail its node, not lose the worker
        log.exception("driver %s raised unexpectedly", node.type)
        return Outcome(
            succeeded=False, error=f"internal error in {node.type} driver: {type(exc).__name__}"
        )
    return Outcome(succeeded=True, output=output)


def render_node_params(
    driver: Driver,
    params: Mapping[str, Any],
    context: Mapping[str, Any],
    timeout_s: float,
    alarmed: bool,
) -> dict[str, Any]:
    """The node's params with their templates rendered (but those the driver reads raw).

    Called inside the node's `deadline`: when that is armed (SIGALRM or the watchdog), it stops
    a looping template; otherwise (an interpreter without SetAsyncExc) the templates' own clock,
    `until`, does.
    Not both: two timeouts racing could raise the second while the first is being reworded.
    """
    until = None if alarmed else time.monotonic() + timeout_s
    try:
        return {
            name: value
            if name in driver.raw_params
            else render_params(value, context, path=f"params.{name}", until=until)
            for name, value in params.items()
        }
    except NodeTimeout:
        raise NodeTimeout(f"timed out after {timeout_s:g}s while rendering the params") from None


def describe_validation_error(exc: ValidationError) -> str:
    """Field names and reasons only: rendered values may hold data that must not be echoed."""
    problems = [
        f"params.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
        for error in exc.errors(include_input=False, include_url=False)
    ]
    return "invalid params after rendering: " + "; ".join(problems)


@contextmanager
def deadline(seconds: float) -> Iterator[bool]:
    """Raise NodeTimeout in the running code after `seconds`; yields whether it could.

    In a prefork child's main thread, SIGALRM: its handler also cuts short a blocking system
    call (a socket read, a sleep) at the deadline. In any other thread (the threads pool of an
    I/O worker, standalone mode), the process's watchdog (app/workflows/deadlines.py), which
    raises between bytecodes: a blocking call first ends at its client's own timeout, which the
    LLM SDKs cap at the time the node has left (app/time_budget.py) and the HTTP drivers set
    from the node's timeout. Either way the lease expiry is the backstop.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        with ThreadDeadline(seconds) as watched, time_budget.budget(seconds):
            yield watched.armed
        return

    def _expire(_signum: int, _frame: Any) -> None:
        raise NodeTimeout(f"timed out after {seconds:g}s")

    previous = signal.signal(signal.SIGALRM, _expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def execute_node(
    sessions: sessionmaker[Session],
    settings: Settings,
    http: httpx.Client,
    ref: NodeRef,
    *,
    claims: sessionmaker[Session] | None = None,
    agents: AgentService | None = None,
) -> list[NodeRef]:
    """Run one node end to end, and the control nodes after it within its completion.

    Lease (on `claims` when given: app/models/session.py make_claims_engine), driver (no
    session open), complete (one durable transaction). Returns what to publish, after the
    commit. A duplicate message claims nothing and returns nothing. A stopping worker hands its
    lease back (app/workflows/handback.py) and returns the node to be published again.
    """
    with (
        log_context(run_id=ref.run_id, node_id=ref.node_id),
        (claims or sessions).begin() as session,
    ):
        lease = lease_node(session, ref.run_id, ref.node_id, settings)
    if lease is None:
        return []
    # What email/SMS drivers record and read; cheap handles on the durable session factory.
    effects, credentials = EffectLedger(sessions), CredentialVault(sessions, settings)

    def run_control_node(control: Lease) -> Outcome:
        """A control node the completion leads to: pure, run while its plan is made
        (app/workflows/planner.py), before that completion's commit."""
        with log_context(run_id=control.run_id, node_id=control.node_id):
            return _timed(control, lambda claimed: invoke_driver(claimed, settings, http))

    with log_context(run_id=lease.run_id, node_id=lease.node_id, workflow_id=lease.workflow_id):
        try:
            outcome = _timed(
                lease,
                lambda leased: invoke_driver(
                    leased, settings, http, agents, effects=effects, credentials=credentials
                ),
            )
        except HandBack:
            return hand_back_leases(sessions, [lease])
        completion = complete_with_retry(
            sessions, lease, outcome, settings, run_control_node=run_control_node
        )
    if completion.finished:
        metrics.record_run_finished(
            completion.finished, lease.workflow_id, max_workflows=settings.metrics_max_workflows
        )
    return completion.to_publish


def _timed(lease: Lease, run: Callable[[Lease], Outcome]) -> Outcome:
    """Run a node's driver and record its duration by type for GET /metrics."""
    started = time.monotonic()
    outcome = run(lease)
    status = "succeeded" if outcome.succeeded else "failed"
    metrics.record_node_duration(lease.node.type, status, time.monotonic() - started)
    return outcome
