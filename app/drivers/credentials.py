"""Credentials as drivers use them: a param that names one, and reading its fields.

A node never holds a secret: it names a credential stored with its workflow or agent
(`"credential": "crm-token"`), and the driver reads it with `ctx.credential(name)` when it runs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from app.credentials.store import NAME_PATTERN, Credential
from app.errors import PermanentDriverError

#: A node param naming a stored credential.
CredentialName = Annotated[str, Field(min_length=1, max_length=128, pattern=NAME_PATTERN)]


def credential_text(credential: Credential) -> str:
    """The credential's value when it is a string."""
    if not isinstance(credential.value, str):
        raise PermanentDriverError(f"credential {credential.name!r} must be a string")
    return credential.value


def credential_fields(
    credential: Credential, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, str]:
    """The credential's object fields; a message naming the missing ones, never a value."""
    value = credential.value
    if not isinstance(value, dict):
        wanted = ", ".join(required)
        raise PermanentDriverError(
            f"credential {credential.name!r} must be an object with {wanted}"
        )
    missing = [name for name in required if not value.get(name)]
    if missing:
        raise PermanentDriverError(f"credential {credential.name!r} lacks {', '.join(missing)}")
    return {name: value[name] for name in (*required, *optional) if value.get(name)}
