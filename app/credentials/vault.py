"""What a worker gives drivers to read credentials by name (NodeContext.credentials)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.credentials.crypto import cipher_for
from app.credentials.store import Credential, find_agent_credential, find_credential


class CredentialVault:
    """Reads one credential at a time, in a short session of its own (no session is held
    while a driver talks to the network)."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    def find_for_agent(self, name: str, agent_id: str) -> Credential | None:
        """The agent's own credential `name` (an MCP server's key), else None."""
        cipher = cipher_for(self._settings)
        with self._sessions() as session:
            return find_agent_credential(session, cipher, name, agent_id)

    def find(self, name: str, *, workflow_id: str, agent_id: str | None) -> Credential | None:
        """The workflow's credential `name`, else its agent's, else None. Raises
        EncryptionNotConfigured or CannotDecrypt; their messages hold no secret."""
        cipher = cipher_for(self._settings)
        with self._sessions() as session:
            return find_credential(
                session, cipher, name, workflow_id=workflow_id, agent_id=agent_id
            )
