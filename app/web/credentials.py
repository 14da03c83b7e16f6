"""Credentials of workflows and agents over HTTP: write-only values, names listed.

PUT stores (or replaces) a value, DELETE removes it, GET lists names and times. No answer ever
carries a value: drivers alone read them, when a node that names one runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from flask import Blueprint, Response
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from app import credentials
from app.credentials import EncryptionNotConfigured
from app.web.api import endpoint
from app.web.context import web_context
from app.web.errors import ApiError
from app.web.schemas import IsoTime, respond

bp = Blueprint("credentials", __name__)

SecretText = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
FIELD_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
FieldName = Annotated[str, StringConstraints(pattern=FIELD_NAME_PATTERN)]
#: Every key must be a field name: `propertyNames` says so (pydantic's `patternProperties`
#: would let any other key through in the document).
SecretFields = Annotated[
    dict[FieldName, SecretText],
    Field(min_length=1, max_length=32),
    WithJsonSchema(
        {
            "type": "object",
            "minProperties": 1,
            "maxProperties": 32,
            "propertyNames": {"pattern": FIELD_NAME_PATTERN},
            "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 10_000},
        }
    ),
]


class CredentialBody(BaseModel):
    """The secret: a string (a token, an SMTP URL) or an object of strings (e.g. Twilio's
    `{"account_sid", "auth_token", "from_number", "api_base"}`)."""

    model_config = ConfigDict(extra="forbid")

    value: SecretText | SecretFields


class CredentialOut(BaseModel):
    """A stored credential, without its value."""

    name: str
    owner: Literal["workflow", "agent"]
    owner_id: str
    created_at: IsoTime
    updated_at: IsoTime


class CredentialList(BaseModel):
    """The names of an owner's credentials, by name."""

    credentials: list[CredentialOut]


def _put(
    owner: credentials.store.Owner, owner_id: str, name: str, body: CredentialBody
) -> Response:
    _check_name(name)
    context = web_context()
    try:
        cipher = credentials.cipher_for(context.settings)
    except EncryptionNotConfigured as exc:
        raise ApiError(503, "encryption_not_configured", str(exc)) from None
    with context.sessions.begin() as session:
        shaped, created = credentials.put_credential(
            session, cipher, owner, owner_id, name, body.value
        )
    return respond(CredentialOut, shaped, 201 if created else 200)


def _delete(owner: credentials.store.Owner, owner_id: str, name: str) -> ResponseReturnValue:
    _check_name(name)
    with web_context().sessions.begin() as session:
        credentials.delete_credential(session, owner, owner_id, name)
    return Response(status=204)


def _list(owner: credentials.store.Owner, owner_id: str) -> Response:
    with web_context().sessions() as session:
        listed = credentials.list_credentials(session, owner, owner_id)
    return respond(CredentialList, {"credentials": listed})


def _check_name(name: str) -> None:
    if not re.match(credentials.NAME_PATTERN, name):
        problem = {
            "code": "string_pattern_mismatch",
            "path": "name",
            "message": "a credential name is 1-128 letters, digits, '_', '.' or '-'",
        }
        raise ApiError(422, "validation_failed", "invalid fields: name", {"problems": [problem]})


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/credentials",
    summary="List a workflow's credentials (names only)",
    responses={200: CredentialList},
)
def list_workflow_credentials(workflow_id: str) -> ResponseReturnValue:
    return _list("workflow", workflow_id)


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/credentials/<name>",
    method="PUT",
    summary="Store a workflow's credential (write-only: never returned)",
    auth="admin",
    body=CredentialBody,
    responses={200: CredentialOut, 201: CredentialOut},
)
def put_workflow_credential(
    workflow_id: str, name: str, body: CredentialBody
) -> ResponseReturnValue:
    return _put("workflow", workflow_id, name, body)


@endpoint(
    bp,
    "/api/workflows/<workflow_id>/credentials/<name>",
    method="DELETE",
    summary="Delete a workflow's credential",
    auth="admin",
    responses={204: None},
)
def delete_workflow_credential(workflow_id: str, name: str) -> ResponseReturnValue:
    return _delete("workflow", workflow_id, name)


@endpoint(
    bp,
    "/api/agents/<agent_id>/credentials",
    summary="List an agent's credentials (names only)",
    responses={200: CredentialList},
)
def list_agent_credentials(agent_id: str) -> ResponseReturnValue:
    return _list("agent", agent_id)


@endpoint(
    bp,
    "/api/agents/<agent_id>/credentials/<name>",
    method="PUT",
    summary="Store an agent's credential (write-only: never returned)",
    auth="admin",
    body=CredentialBody,
    responses={200: CredentialOut, 201: CredentialOut},
)
def put_agent_credential(agent_id: str, name: str, body: CredentialBody) -> ResponseReturnValue:
    return _put("agent", agent_id, name, body)


@endpoint(
    bp,
    "/api/agents/<agent_id>/credentials/<name>",
    method="DELETE",
    summary="Delete an agent's credential",
    auth="admin",
    responses={204: None},
)
def delete_agent_credential(agent_id: str, name: str) -> ResponseReturnValue:
    return _delete("agent", agent_id, name)
