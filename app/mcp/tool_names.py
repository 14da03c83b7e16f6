"""Tool names as the LLM providers accept them, and back.

OpenAI and Anthropic both want `^[a-zA-Z0-9_-]{1,64}$`; an MCP server's tools may use `.`,
`/` and up to 128 characters. An agent's tools are offered under a mapped name and the
model's calls are mapped back before they run:

- a name that already follows the rule is its own wire name (workflow tool names are
  validated at save time, so they never change);
- any other character becomes `_`; a name that then clashes with another, is too long or empty,
  ends with `_` and a hash of the original instead.

The mapping depends on the set of names only (not their order), so the same tools get the
same wire names in every turn.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable

MAX_LENGTH = 64
#: The rule, for re.fullmatch (`$` would let a trailing newline through).
WIRE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INVALID = re.compile(r"[^A-Za-z0-9_-]")
#: Hex digits of the hash suffix; longer ones only if a shorter one is taken.
_HASH_LENGTHS = (8, 12, 16, 24, 32)


class ToolNames:
    """One agent turn's tools: original name <-> wire name, both ways, one to one."""

    def __init__(self, originals: Iterable[str]) -> None:
        names = set(originals)
        self._wire: dict[str, str] = {name: name for name in names if WIRE_NAME.fullmatch(name)}
        taken = set(self._wire)
        renamed = sorted(names - taken)
        by_candidate: defaultdict[str, list[str]] = defaultdict(list)
        for name in renamed:
            by_candidate[_sanitize(name)].append(name)
        # Clean candidates first, so a hashed name can never take one of them.
        for candidate, group in sorted(by_candidate.items()):
            if len(group) == 1 and WIRE_NAME.fullmatch(candidate) and candidate not in taken:
                self._wire[group[0]] = candidate
                taken.add(candidate)
        for name in renamed:
            if name not in self._wire:
                self._wire[name] = _hashed(name, taken)
                taken.add(self._wire[name])
        self._original = {wire: name for name, wire in self._wire.items()}

    def wire(self, original: str) -> str:
        """The name to offer the model. A name not in the list (a call in memory from a tool
        since removed) gets a standalone form that still follows the rule."""
        known = self._wire.get(original)
        if known is not None:
            return known
        if WIRE_NAME.fullmatch(original):
            return original
        return _hashed(original, set())

    def original(self, wire: str) -> str | None:
        """The tool the model means by `wire`, or None when no tool of this turn has it."""
        return self._original.get(wire)

    def __len__(self) -> int:
        return len(self._wire)


def _sanitize(name: str) -> str:
    return _INVALID.sub("_", name)


def _hashed(name: str, taken: set[str]) -> str:
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    for length in _HASH_LENGTHS:
        suffix = "_" + digest[:length]
        wire = _sanitize(name)[: MAX_LENGTH - len(suffix)] + suffix
        if wire not in taken:
            return wire
    raise ValueError(f"no free wire name for tool {name!r}")  # 128-bit hashes never collide
