"""Fernet encryption of stored credentials: DUALMCP_ENCRYPTION_KEY, rotated with MultiFernet.

The setting holds one or more Fernet keys, comma-separated. The first encrypts; every one
decrypts, so a new key can be put first, `dualmcp keys rotate-encryption` re-encrypts every
stored credential with it, and the old key can then be dropped. Messages never quote a key.
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings
from app.errors import DualMCPError


class EncryptionNotConfigured(DualMCPError):
    """DUALMCP_ENCRYPTION_KEY is missing or malformed: credentials cannot be stored or read."""


class CannotDecrypt(DualMCPError):
    """A stored token that no configured key decrypts (a key dropped too early, or tampering)."""


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, url-safe base64)."""
    return Fernet.generate_key().decode()


class Cipher:
    """Encrypts with the first configured key, decrypts with any of them."""

    def __init__(self, fernet: MultiFernet) -> None:
        self._fernet = fernet

    def encrypt(self, plaintext: bytes) -> str:
        return self._fernet.encrypt(plaintext).decode()

    def decrypt(self, token: str) -> bytes:
        try:
            return self._fernet.decrypt(token.encode())
        except InvalidToken:
            raise CannotDecrypt(
                "no key in DUALMCP_ENCRYPTION_KEY decrypts it (was its key removed?)"
            ) from None

    def rotate(self, token: str) -> str:
        """The same plaintext, encrypted again with the first key."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise CannotDecrypt(
                "no key in DUALMCP_ENCRYPTION_KEY decrypts it (was its key removed?)"
            ) from None


def cipher_for(settings: Settings) -> Cipher:
    """The cipher for the configured keys; raises EncryptionNotConfigured, naming no key."""
    secret = settings.encryption_key
    spec = secret.get_secret_value() if secret is not None else ""
    return _cipher(spec)


@functools.lru_cache(maxsize=4)
def _cipher(spec: str) -> Cipher:
    keys = [part.strip() for part in spec.split(",") if part.strip()]
    if not keys:
        raise EncryptionNotConfigured(
            "DUALMCP_ENCRYPTION_KEY is not set: credentials cannot be stored or read "
            "(`dualmcp keys new-encryption-key` makes one)"
        )
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):  # binascii.Error is a ValueError
            raise EncryptionNotConfigured(
                f"DUALMCP_ENCRYPTION_KEY: key {position} of {len(keys)} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)"
            ) from None
    return Cipher(MultiFernet(fernets))
