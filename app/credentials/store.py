"""Credentials of workflows and agents: data functions taking a session (and a Cipher).

A credential is a name and a secret value: a string (a token, an SMTP URL) or an object of
strings (`{"account_sid": ..., "auth_token": ...}`). Only its Fernet token is stored; reading
it back is for drivers alone (`find_credential`); the API lists names and times, never values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.credentials.crypto import CannotDecrypt, Cipher
from app.errors import NotFound
from app.models import AgentMCP, StoredCredential, Workflow, utcnow

#: Names as nodes reference them: `"credential": "crm-token"`.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

Owner = Literal["workflow", "agent"]
CredentialValue = str | dict[str, str]


@dataclass(frozen=True)
class Credential:
    """A decrypted credential; its repr never shows the value (tracebacks, logs)."""

    name: str
    value: CredentialValue = field(repr=False)


def put_credential(
    session: Session, cipher: Cipher, owner: Owner, owner_id: str, name: str, value: CredentialValue
) -> tuple[dict[str, Any], bool]:
    """Store (or replace) the credential; returns its description and whether it is new."""
    _require_owner(session, owner, owner_id)
    token = cipher.encrypt(json.dumps(value, separators=(",", ":")).encode())
    row = session.scalar(_owned(owner, owner_id).where(StoredCredential.name == name))
    created = row is None
    if row is None:
        row = StoredCredential(name=name, ciphertext=token, **{_column(owner): owner_id})
        session.add(row)
    else:
        row.ciphertext = token
        row.updated_at = utcnow()
    session.flush()
    return credential_to_dict(row), created


def delete_credential(session: Session, owner: Owner, owner_id: str, name: str) -> None:
    _require_owner(session, owner, owner_id)
    column = getattr(StoredCredential, _column(owner))
    deleted = session.execute(
        delete(StoredCredential).where(column == owner_id, StoredCredential.name == name)
    )
    if not deleted.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"no credential {name!r} for {owner} {owner_id!r}")


def list_credentials(session: Session, owner: Owner, owner_id: str) -> list[dict[str, Any]]:
    """Names and times of the owner's credentials, by name; never their values."""
    _require_owner(session, owner, owner_id)
    rows = session.scalars(_owned(owner, owner_id).order_by(StoredCredential.name))
    return [credential_to_dict(row) for row in rows]


def find_credential(
    session: Session, cipher: Cipher, name: str, *, workflow_id: str, agent_id: str | None
) -> Credential | None:
    """The workflow's credential `name`, else its agent's; None when neither has one.
    Raises CannotDecrypt (naming the credential, never a value) when no key decrypts it."""
    candidates: list[tuple[Owner, str]] = [("workflow", workflow_id)]
    candidates += [("agent", agent_id)] if agent_id else []
    return _first_found(session, cipher, name, candidates)


def find_agent_credential(
    session: Session, cipher: Cipher, name: str, agent_id: str
) -> Credential | None:
    """The agent's credential `name`; None when it has none."""
    return _first_found(session, cipher, name, [("agent", agent_id)])


def _first_found(
    session: Session, cipher: Cipher, name: str, candidates: list[tuple[Owner, str]]
) -> Credential | None:
    for owner, owner_id in candidates:
        row = session.scalar(_owned(owner, owner_id).where(StoredCredential.name == name))
        if row is not None:
            try:
                plaintext = cipher.decrypt(row.ciphertext)
            except CannotDecrypt as exc:
                raise CannotDecrypt(f"credential {name!r} of {owner} {owner_id!r}: {exc}") from None
            return Credential(name, json.loads(plaintext))
    return None


def rotate_credentials(session: Session, cipher: Cipher) -> int:
    """Re-encrypt every stored credential with the first key; all or nothing (one transaction:
    the caller's). Raises CannotDecrypt naming the first credential no key decrypts."""
    rows = session.scalars(select(StoredCredential).order_by(StoredCredential.id)).all()
    for row in rows:
        try:
            row.ciphertext = cipher.rotate(row.ciphertext)
        except CannotDecrypt as exc:
            owner = (
                f"workflow {row.workflow_id!r}" if row.workflow_id else f"agent {row.agent_id!r}"
            )
            raise CannotDecrypt(f"credential {row.name!r} of {owner}: {exc}") from None
    session.flush()
    return len(rows)


def credential_to_dict(row: StoredCredential) -> dict[str, Any]:
    return {
        "name": row.name,
        "owner": "workflow" if row.workflow_id is not None else "agent",
        "owner_id": row.workflow_id if row.workflow_id is not None else row.agent_id,
        "created_at": _iso(row.created_at),
        "updated_at": _iso(row.updated_at),
    }


def _owned(owner: Owner, owner_id: str) -> Any:
    column = getattr(StoredCredential, _column(owner))
    return select(StoredCredential).where(column == owner_id)


def _column(owner: Owner) -> str:
    return "workflow_id" if owner == "workflow" else "agent_id"


def _require_owner(session: Session, owner: Owner, owner_id: str) -> None:
    model = Workflow if owner == "workflow" else AgentMCP
    if session.get(model, owner_id) is None:
        raise NotFound(f"no {owner} with id {owner_id!r}")


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")
