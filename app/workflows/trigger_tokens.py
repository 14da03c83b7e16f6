"""Trigger tokens: how a sender that cannot sign starts a workflow's runs (issue 13, section 4).

A workflow whose trigger is `{"type": "webhook", "scheme": "token"}` gets a random token when it
is saved. Only its SHA-256 is stored (`workflows.trigger_token_hash`); the token itself is shown
once, in the answer that made it. Later saves keep it; `rotate_trigger_token` replaces it (the
old one stops working at once); saving the workflow with another trigger drops it.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import Workflow, utcnow

#: Marks a trigger token wherever it turns up (a log line, a paste), like `whsec_` a secret.
TOKEN_PREFIX = "whtok_"


def new_token() -> str:
    """256 random bits, URL-safe (it may be sent as `?token=`)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What is stored and compared: the hex SHA-256 (a random token needs no slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def takes_token(trigger_config: dict[str, object] | None) -> bool:
    config = trigger_config or {}
    return config.get("type") == "webhook" and config.get("scheme") == "token"


def sync_trigger_token(session: Session, workflow_id: str) -> str | None:
    """After a save: a new token when the trigger takes one and has none yet (returned, to be
    shown once); None otherwise. A trigger that no longer takes a token loses its hash."""
    workflow = _workflow(session, workflow_id, lock=False)  # save_workflow already locked it
    if not takes_token(workflow.trigger_config):
        workflow.trigger_token_hash = None
        return None
    if workflow.trigger_token_hash is not None:
        return None
    token = new_token()
    workflow.trigger_token_hash = token_digest(token)
    return token


def rotate_trigger_token(session: Session, workflow_id: str) -> str:
    """A new token replacing the old one; Conflict when the trigger takes no token. Moves
    `updated_at`, so a front end's remembered copy of the trigger (and the old hash) is
    refused by the insert that would start the run (app/workflows/triggers.py)."""
    workflow = _workflow(session, workflow_id, lock=True)
    if not takes_token(workflow.trigger_config):
        raise Conflict(
            f'workflow {workflow_id!r} has no token trigger ({{"type": "webhook", '
            f'"scheme": "token"}})'
        )
    token = new_token()
    workflow.trigger_token_hash = token_digest(token)
    workflow.updated_at = utcnow()
    return token


def _workflow(session: Session, workflow_id: str, *, lock: bool) -> Workflow:
    workflow = session.get(Workflow, workflow_id, with_for_update=lock)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow
