"""Credentials for drivers, stored per workflow or agent and encrypted with Fernet.

Nodes name them (`"credential": "crm-token"`); the driver resolves the name when it runs, so a
secret never enters the template context, a definition, a node's output, an error or a log.
"""

from app.credentials.crypto import CannotDecrypt, Cipher, EncryptionNotConfigured, cipher_for
from app.credentials.store import (
    NAME_PATTERN,
    Credential,
    CredentialValue,
    delete_credential,
    find_credential,
    list_credentials,
    put_credential,
    rotate_credentials,
)
from app.credentials.vault import CredentialVault

__all__ = [
    "NAME_PATTERN",
    "CannotDecrypt",
    "Cipher",
    "Credential",
    "CredentialValue",
    "CredentialVault",
    "EncryptionNotConfigured",
    "cipher_for",
    "delete_credential",
    "find_credential",
    "list_credentials",
    "put_credential",
    "rotate_credentials",
]
