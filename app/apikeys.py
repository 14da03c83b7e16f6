"""API keys: from DUALMCP_API_KEYS, or stored hashed in the database (`dualmcp keys create`).

Keys are long random tokens, so a SHA-256 of the key is enough to store (as GitHub does with
tokens): a stolen table cannot be turned back into keys, and lookup by hash leaks no timing
about the key itself. Keys from the environment are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.models import ApiKey

#: read: read everything; invoke: read, start runs and call tools (MCP, agents), change
#: nothing else; admin: everything.
Scope = Literal["admin", "invoke", "read"]
SCOPES: tuple[Scope, ...] = ("admin", "invoke", "read")
_RANK: dict[str, int] = {"read": 0, "invoke": 1, "admin": 2}


def allows(scope: Scope, needed: Scope) -> bool:
    """Whether a key of `scope` may do what needs `needed` (read < invoke < admin)."""
    return _RANK[scope] >= _RANK[needed]


KEY_PREFIX = "dmcp_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_env_keys(spec: str) -> list[tuple[Scope, str]]:
    """`admin:k1,read:k2` -> [("admin", "k1"), ("read", "k2")]; raises ValueError naming the entry
    position (never the key) when one is malformed."""
    keys: list[tuple[Scope, str]] = []
    for position, entry in enumerate(part.strip() for part in spec.split(",")):
        if not entry:
            continue
        scope, _, key = entry.partition(":")
        if scope not in SCOPES or not key:
            raise ValueError(
                f"DUALMCP_API_KEYS entry {position + 1} must be 'admin:<key>', 'invoke:<key>'"
                " or 'read:<key>'"
            )
        keys.append((scope, key))
    return keys


def scope_from_env(env_keys: list[tuple[Scope, str]], presented: str) -> Scope | None:
    found: Scope | None = None
    for scope, key in env_keys:  # no early exit: time does not depend on which key matched
        if hmac.compare_digest(key.encode(), presented.encode()):
            found = scope
    return found


def scope_from_store(session: Session, presented: str) -> Scope | None:
    scope = session.scalar(select(ApiKey.scope).where(ApiKey.key_hash == hash_key(presented)))
    return scope if scope in SCOPES else None


def create_key(session: Session, scope: Scope, name: str = "") -> str:
    """Store a new key and return it; this is the only time it is visible."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    key = new_key()
    session.add(ApiKey(key_hash=hash_key(key), scope=scope, name=name))
    session.flush()
    return key


#: Characters of a stored key's hash shown as its id (`dualmcp keys list`): the key itself is
#: never kept, and 48 bits of its hash tell any two keys apart.
KEY_ID_LENGTH = 12


@dataclass(frozen=True)
class StoredKey:
    """A stored key as an operator sees it: never the key, only an id drawn from its hash."""

    key_id: str
    scope: str
    name: str
    created_at: datetime


def list_keys(session: Session) -> list[StoredKey]:
    """Every stored key, oldest first (keys from DUALMCP_API_KEYS are not stored)."""
    rows = session.execute(select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_hash))
    return [_shown(row) for row in rows.scalars()]


def revoke_key(session: Session, key_or_id: str) -> StoredKey:
    """Delete the stored key named by its id from `list_keys` (or a longer prefix of its hash),
    or by the key itself; the next request with it gets 401. NotFound when nothing matches,
    Conflict when an id prefix matches several keys."""
    if key_or_id.startswith(KEY_PREFIX):
        by_hash = select(ApiKey).where(ApiKey.key_hash == hash_key(key_or_id))
        matches = list(session.scalars(by_hash))
    elif len(key_or_id) < 8 or any(c not in "0123456789abcdef" for c in key_or_id):
        raise NotFound("a key id is at least 8 hex characters, as `dualmcp keys list` shows")
    else:
        matches = list(session.scalars(select(ApiKey).where(ApiKey.key_hash.startswith(key_or_id))))
    if not matches:
        raise NotFound(f"no stored key {_described(key_or_id)}")
    if len(matches) > 1:
        raise Conflict(f"{len(matches)} keys start with {key_or_id}: give more of the id")
    (key,) = matches
    session.execute(delete(ApiKey).where(ApiKey.key_hash == key.key_hash))
    return _shown(key)


def _shown(key: ApiKey) -> StoredKey:
    return StoredKey(key.key_hash[:KEY_ID_LENGTH], key.scope, key.name, key.created_at)


def _described(key_or_id: str) -> str:
    """How an error names what was asked for: an id as given, a key never."""
    return "matches that key" if key_or_id.startswith(KEY_PREFIX) else f"has the id {key_or_id}"
