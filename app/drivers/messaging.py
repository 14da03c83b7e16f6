"""What the email and SMS drivers share: the ledger of what was sent, and the outbox.

Order of a send (DESIGN.md Execution 5, Data: sent_effects): look the node's idempotency key up
in the ledger (a re-run returns the first output and sends nothing), send, record the output
before returning. With no credentials configured the message goes to the outbox instead, stored
and recorded in one transaction, and the output says `"backend": "outbox"`.
"""

from __future__ import annotations

from typing import Any

from app.drivers.base import NodeContext
from app.errors import PermanentDriverError
from app.messaging.ledger import Effect, EffectLedger


def require_ledger(ctx: NodeContext, node_type: str) -> EffectLedger:
    if ctx.effects is None:
        raise PermanentDriverError(
            f"{node_type}: no sent_effects ledger is wired into this process"
        )
    return ctx.effects


def effect_of(ctx: NodeContext, node_type: str) -> Effect:
    return Effect(ctx.idempotency_key, node_type, ctx.run_id, ctx.workflow_id, ctx.node_id)


def replayed(output: dict[str, Any]) -> dict[str, Any]:
    """The output first recorded, as a re-run of the node returns it."""
    return {**output, "replayed": True}
