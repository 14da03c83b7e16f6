"""Text PostgreSQL cannot store, found before anything is written (issue 13).

Neither `text` nor `jsonb` holds a NUL character or a lone UTF-16 surrogate; a value holding one
answers 500 from the database. Every way a value reaches the database (request bodies, webhook
payloads, tool call arguments) asks `unstorable_text_problems` first. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: What PostgreSQL's text and jsonb cannot hold.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_text_problems(value: Any, prefix: str = "") -> list[dict[str, str]]:
    """Each string or key in `value` that PostgreSQL cannot store (a NUL character, a lone
    surrogate), as a problem `{code, path, message}` with its path under `prefix`; for payloads
    that are not JSON (forms, text) but are stored all the same."""
    problems: list[dict[str, str]] = []
    for path, node, _depth in walk(value, prefix):
        problems.extend(_text_problems(path, node))
    return problems


def has_unstorable_text(text: str) -> bool:
    return _UNSTORABLE.search(text) is not None


def walk(value: Any, prefix: str) -> Iterator[tuple[str, Any, int]]:
    """Every node of `value` in document order, with its path (`input.items.0`) and the number
    of containers it is or sits in (`_depth`'s count); each key comes as a `_Key` under the path
    it names. No recursion: the nesting may be what is wrong."""
    stack: list[tuple[str, Any, int]] = [(prefix, value, 0)]
    while stack:
        path, node, outer = stack.pop()
        if isinstance(node, dict):
            depth = outer + 1
            yield path, node, depth
            children: list[tuple[str, Any, int]] = []
            for key, child in node.items():
                if isinstance(key, str):
                    child_path = _join(path, _key_segment(key))
                    children.append((child_path, _Key(key), depth))
                else:  # not from JSON: a payload built in code
                    child_path = _join(path, str(key))
                children.append((child_path, child, depth))
        elif isinstance(node, list | tuple):  # tuples: payloads built in code
            depth = outer + 1
            yield path, node, depth
            children = [(_join(path, str(index)), child, depth) for index, child in enumerate(node)]
        else:
            yield path, node, outer
            continue
        stack.extend(reversed(children))


class _Key(str):
    """A dict key met in `walk`: a leaf of its own, so its problems can say `key`."""

    __slots__ = ()


def _text_problems(path: str, node: Any) -> list[dict[str, str]]:
    if not isinstance(node, str):
        return []
    what = "the key" if isinstance(node, _Key) else "the text"
    problems = []
    found = {match.group() for match in _UNSTORABLE.finditer(node)}
    if "\x00" in found:
        problems.append(
            {
                "code": "nul_character",
                "path": path,
                "message": f"{what} holds a NUL character (\\u0000), which cannot be stored",
            }
        )
    if found - {"\x00"}:
        problems.append(
            {
                "code": "lone_surrogate",
                "path": path,
                "message": f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is"
                " not a character and cannot be stored",
            }
        )
    return problems


def _key_segment(key: str) -> str:
    """A key as a path segment, with what cannot be stored (nor logged) spelled as escapes."""
    return _UNSTORABLE.sub(lambda match: f"\\u{ord(match.group()):04x}", key)


def _join(path: str, segment: str) -> str:
    return f"{path}.{segment}" if path else segment


def make_storable(value: Any) -> Any:
    """`value` with every NUL and lone surrogate replaced by U+FFFD: for text that is not the
    caller's to refuse (a model's reply, a remote tool's result), which must still be stored."""
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {make_storable(key): make_storable(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [make_storable(child) for child in value]
    return value
