"""The Driver interface: what every node type implements, and what it is given to run.

A driver is small and typed and knows nothing of Celery, Flask or the database: the task
renders the params, builds a NodeContext and calls `run`; the output must be JSON-serialisable.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
from pydantic import BaseModel

from app.config import Settings
from app.credentials import CannotDecrypt, Credential, CredentialVault, EncryptionNotConfigured
from app.errors import PermanentDriverError

if TYPE_CHECKING:
    from app.agents.service import AgentService
    from app.messaging.ledger import EffectLedger


def idempotency_key(run_id: str, node_id: str) -> str:
    """sha256(run_id:node_id): the same on every attempt of one node (DESIGN.md Execution 5)."""
    return hashlib.sha256(f"{run_id}:{node_id}".encode()).hexdigest()


@dataclass
class NodeContext:
    """Everything a driver may use besides its params. I/O clients are passed in, not made."""

    run_id: str
    node_id: str
    workflow_id: str
    attempt: int
    #: Seconds this attempt may take; drivers pass it on to their own clients.
    timeout_s: float
    settings: Settings
    #: The SSRF-guarded client (app/safe_http.py); the only way a driver reaches the network.
    http: httpx.Client
    #: The template context (trigger, nodes, run, agent); for drivers that evaluate expressions.
    template_context: Mapping[str, Any] = field(default_factory=dict)
    #: The workflow's agent (its definition's agent_id), if it names one.
    agent_id: str | None = None
    #: The agent service and LLM providers of this process; None where none is wired (then the
    #: LLM drivers fail their node saying so).
    agents: AgentService | None = None
    #: sent_effects and the outbox (app/messaging/ledger.py), for drivers that record what they
    #: did because the provider cannot deduplicate; None where none is wired.
    effects: EffectLedger | None = None
    #: Credentials stored with the workflow or its agent (app/credentials); see `credential`.
    credentials: CredentialVault | None = None

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.run_id, self.node_id)

    def credential(self, name: str) -> Credential:
        """The credential `name` of this workflow (else of its agent); a missing or unreadable
        one fails the node with a message that names it and holds no secret."""
        if self.credentials is None:
            raise PermanentDriverError(f"credential {name!r}: no credential store is wired")
        try:
            found = self.credentials.find(
                name, workflow_id=self.workflow_id, agent_id=self.agent_id
            )
        except CannotDecrypt as exc:  # its message names the credential and its owner
            raise PermanentDriverError(str(exc)) from None
        except EncryptionNotConfigured as exc:
            raise PermanentDriverError(f"credential {name!r}: {exc}") from None
        if found is None:
            owners = f"workflow {self.workflow_id!r}" + (
                f" or its agent {self.agent_id!r}" if self.agent_id else ""
            )
            raise PermanentDriverError(f"no credential {name!r} is stored for {owners}")
        return found

    def idempotency_headers(self) -> dict[str, str]:
        """Headers that let a receiver deduplicate our retries (Standard Webhooks and Stripe)."""
        return {"webhook-id": self.idempotency_key, "Idempotency-Key": self.idempotency_key}


class Driver:
    """Base class of every node type's driver."""

    #: The node type this driver runs, e.g. "webhook".
    type: ClassVar[str]
    #: The params schema: validated when a workflow is saved and again after rendering.
    Params: ClassVar[builtins.type[BaseModel]]  # builtins: `type` above shadows it here
    #: True when running the node changes the outside world; it then gets an idempotency key.
    side_effects: ClassVar[bool] = False
    #: True for control nodes (no I/O): they may run inline in the task of the node before them.
    inline: ClassVar[bool] = False
    #: Params passed to the driver unrendered, because the driver evaluates them itself; rendering
    #: them first would let data from a payload be evaluated as an expression.
    raw_params: ClassVar[frozenset[str]] = frozenset()

    def run(self, params: Any, ctx: NodeContext) -> dict[str, Any]:
        """Do the node's work and return its output; raise a DriverError subclass on failure."""
        raise NotImplementedError
