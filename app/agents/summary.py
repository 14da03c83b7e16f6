"""The rolling summary of a session's turns that fell out of the memory window.

A truncation-based digest, not an LLM call: each turn becomes one clipped line, and only the
newest lines that fit SUMMARY_MAX_CHARS are kept. Deterministic and free, and because the kept
lines depend only on the newest REBUILD_TURNS turns, the summary can always be rebuilt exactly
from agent_messages when the stored copy is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

#: Longest summary, in characters (whole lines are dropped, oldest first, past it).
SUMMARY_MAX_CHARS = 2000
#: Longest excerpt of one message in a summary line.
EXCERPT_CHARS = 160
_LINE_FORMAT = "- user: {user} | assistant: {assistant}"
#: The shortest possible line; enough turns to fill the summary even with such lines.
_MIN_LINE = len(_LINE_FORMAT.format(user="", assistant="")) + 1
#: Turns read back from PostgreSQL to rebuild a summary: more can never fit.
REBUILD_TURNS = SUMMARY_MAX_CHARS // _MIN_LINE + 1

Turn = Sequence[dict[str, Any]]


def fold(summary: str, turns: Iterable[Turn]) -> str:
    """`summary` with one line per turn added, trimmed to the newest lines that fit."""
    lines = summary.splitlines() if summary else []
    lines += [summary_line(turn) for turn in turns]
    size = sum(len(line) + 1 for line in lines)
    while lines and size - 1 > SUMMARY_MAX_CHARS:
        size -= len(lines.pop(0)) + 1
    return "\n".join(lines)


def summary_line(turn: Turn) -> str:
    said = {"user": "", "assistant": ""}
    for message in turn:
        role = message["role"]
        if role in said:
            said[role] = (said[role] + " " + message["content"]).strip()
    return _LINE_FORMAT.format(user=_excerpt(said["user"]), assistant=_excerpt(said["assistant"]))


def _excerpt(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"
