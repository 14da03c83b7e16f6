"""Problem paths like `nodes[2].retry.max_attempts`: one spelling for validation and templating."""

from __future__ import annotations

import re

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def child_path(parent: str, key: str | int) -> str:
    """The path of `key` in `parent`: `.name` for plain keys, `[0]` for indexes, else `["a b"]`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{parent}.{key}" if parent else key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'{parent}["{escaped}"]'
