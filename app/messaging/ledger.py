"""What side-effecting drivers already did (`sent_effects`), and the outbox (DESIGN.md: Data).

A driver that cannot hand its idempotency key to the provider (SMTP, Twilio) checks the ledger
first and records what it did before returning, so a re-run of its node (a worker lost after
sending, before its completion was committed) returns the first output and sends nothing.
Messages for the outbox are stored and recorded in one transaction: exactly once, even when two
attempts of one node race.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.errors import RetryableDriverError
from app.models import OutboxMessage, SentEffect

log = logging.getLogger(__name__)

#: Seconds `record` keeps trying while the database is unreachable: the message is already
#: sent, so waiting beats failing the node (whose retry would send it again).
RECORD_RETRY_S = 10.0


@dataclass(frozen=True)
class Effect:
    """One node's side effect: who does it, under which idempotency key."""

    key: str
    node_type: str
    run_id: str
    workflow_id: str
    node_id: str


class EffectLedger:
    """sent_effects and outbox_messages, each call in a short transaction of its own."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def done(self, key: str) -> dict[str, Any] | None:
        """The output recorded for `key`, or None when nothing was done under it yet."""
        with self._sessions() as session:
            row = session.get(SentEffect, key)
            if row is None:
                return None
            return dict(row.output or {"id": row.provider_id})

    def record(self, effect: Effect, provider_id: str, output: dict[str, Any]) -> dict[str, Any]:
        """Remember that `effect` was done; returns the output to give (the first one recorded,
        should another attempt have recorded meanwhile)."""
        delay, give_up_at = 0.25, time.monotonic() + RECORD_RETRY_S
        while True:
            try:
                return self._insert(effect, provider_id, output, outbox=None)
            except OperationalError as exc:
                if time.monotonic() + delay > give_up_at:
                    raise RetryableDriverError(
                        f"{effect.node_type}: sent, but could not record it: the database is "
                        "unreachable"
                    ) from exc
                log.warning("database unreachable while recording a sent effect; retrying")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def deliver_to_outbox(
        self,
        effect: Effect,
        channel: str,
        message: dict[str, Any],
        output_for: Callable[[int], dict[str, Any]],
    ) -> dict[str, Any]:
        """Store `message` in the outbox and record the effect, in one transaction; returns
        `output_for(outbox id)`, or the output already recorded for the effect."""
        return self._insert(effect, None, None, outbox=(channel, message, output_for))

    def _insert(
        self,
        effect: Effect,
        provider_id: str | None,
        output: dict[str, Any] | None,
        outbox: tuple[str, dict[str, Any], Callable[[int], dict[str, Any]]] | None,
    ) -> dict[str, Any]:
        try:
            with self._sessions.begin() as session:
                if outbox is not None:
                    channel, message, output_for = outbox
                    row = OutboxMessage(
                        idempotency_key=effect.key,
                        channel=channel,
                        run_id=_uuid_or_none(effect.run_id),
                        workflow_id=effect.workflow_id,
                        node_id=effect.node_id,
                        message=message,
                    )
                    session.add(row)
                    session.flush()
                    output = output_for(row.id)
                    provider_id = str(output.get("id", row.id))
                assert output is not None
                session.add(
                    SentEffect(
                        idempotency_key=effect.key,
                        node_type=effect.node_type,
                        provider_id=provider_id,
                        output=output,
                    )
                )
            return output
        except IntegrityError:  # another attempt of the node got there first: use its record
            earlier = self.done(effect.key)
            if earlier is None:
                raise
            return earlier


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
