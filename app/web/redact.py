"""Hiding secrets written into definitions (webhook secrets, tokens) from read-only keys.

Read keys serve dashboards; a signing secret shown there could forge triggers. Admin keys may
replace the definition anyway, so they see it whole and can round-trip it with PUT.
"""

from __future__ import annotations

import re
from typing import Any

#: Keys whose values are secret wherever they appear, e.g. trigger.secrets, params.secret,
#: params.headers.Authorization, params.api_key.
SECRET_KEY = re.compile(r"secret|password|passwd|token|api[_-]?key|authorization", re.IGNORECASE)
MASK = "***"


def redact_secrets(value: Any) -> Any:
    """A copy of `value` with every value under a secret-looking key masked."""
    if isinstance(value, dict):
        return {
            key: _mask(item) if SECRET_KEY.search(str(key)) else redact_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


def _mask(value: Any) -> Any:
    if isinstance(value, list):
        return [_mask(item) for item in value]
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    return None if value is None else MASK
