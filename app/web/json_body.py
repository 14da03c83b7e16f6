"""Request bodies: read no further than the limit, and parse JSON one strict way.

Every JSON body of the API and of webhook triggers goes through `parse_json_body`. `json.loads`
alone accepts what PostgreSQL then refuses with a 500 (issue 13): `NaN` and `Infinity` (not JSON;
jsonb refuses them), and strings holding a NUL character or a lone surrogate (neither text nor
jsonb can store them). All of it is decided here, before any database read or write.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import IO, Any, cast

from flask import Request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from app.engine.storable_text import (
    unstorable_text_problems,
    walk,
)
from app.web.errors import ApiError

#: Deeper JSON than this is refused: `[]` is one level, `[[]]` two.
MAX_JSON_DEPTH = 32

#: Only a `\u` escape can put one of those in a parsed string (raw NUL bytes are not JSON, and
#: strict UTF-8 has no surrogates): without one, the strings need no look.
_UNSTORABLE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class _NonFinite:
    """Left in the parsed value where a number is not finite, so the refusal can name its path."""

    __slots__ = ("literal",)

    def __init__(self, literal: str) -> None:
        self.literal = literal


def parse_json_body(raw: bytes) -> Any:
    """The body's JSON value. 400 `malformed_json` unless it is UTF-8 JSON with finite numbers
    nested at most MAX_JSON_DEPTH deep; 422 `invalid_text` when a string or a key holds a NUL
    character or a lone surrogate, listing each with its path."""
    text = _utf8(raw)
    non_finite: list[_NonFinite] = []

    def refused(literal: str) -> _NonFinite:
        non_finite.append(_NonFinite(literal))
        return non_finite[-1]

    def finite_float(literal: str) -> float | _NonFinite:
        number = float(literal)
        return number if math.isfinite(number) else refused(literal)

    try:
        value = json.loads(text, parse_constant=refused, parse_float=finite_float)
    except RecursionError:
        raise _malformed("the JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise _malformed(f"the body is not valid JSON: {exc.msg} at {where}") from None
    except ValueError:  # int() refuses more digits than this, against quadratic time
        digits = sys.get_int_max_str_digits()
        raise _malformed(f"the body holds an integer of more than {digits} digits") from None
    # The common body costs one pass over its containers; paths are made only to refuse.
    if _depth(value) > MAX_JSON_DEPTH:
        path = next(path for path, _, depth in walk(value, "") if depth > MAX_JSON_DEPTH)
        raise _malformed(
            f"the JSON body is nested deeper than {MAX_JSON_DEPTH} levels (at {_shown(path)})"
        )
    if non_finite:
        path, node = next((p, n) for p, n, _ in walk(value, "") if isinstance(n, _NonFinite))
        raise _malformed(_non_finite_message(node.literal, path))
    if _UNSTORABLE_ESCAPE.search(text):
        problems = unstorable_text_problems(value)
        if problems:
            raise invalid_text(problems)
    return value


def invalid_text(problems: list[dict[str, str]]) -> ApiError:
    """The 422 for `unstorable_text_problems`, shaped like app/web/api.py `validate`'s."""
    fields = ", ".join(dict.fromkeys(_shown(problem["path"]) for problem in problems))
    return ApiError(
        422,
        "invalid_text",
        f"text that cannot be stored in: {fields}",
        {"problems": problems},
    )


class BoundedRequest(Request):
    """A request whose body is a 413 past `max_content_length` also when no Content-Length
    announces it (`Transfer-Encoding: chunked`): werkzeug's stream then stops at the limit and
    hands on the first bytes as if they were the whole body (issue 13)."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        terminated = "wsgi.input_terminated" in self.environ  # the server ends a chunked body
        if limit is None or self.content_length is not None or not terminated or self.shallow:
            return get_input_stream(self.environ, max_content_length=limit)
        return cast(IO[bytes], _AtMost(self.environ["wsgi.input"], limit))


class _AtMost(LimitedStream):
    """Reads the whole body, or one byte past `limit` and then answers 413."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def readall(self) -> bytes:
        data = super().readall()  # stops at the limit without telling
        if self.is_exhausted and self._source.read(1):
            raise RequestEntityTooLarge()
        return data


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # RFC 8259 8.1: UTF-8; a byte order mark may be ignored
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise _malformed(
            f"the body is not valid UTF-8: byte 0x{byte:02x} at offset {exc.start} ({exc.reason})"
        ) from None


def _depth(value: Any) -> int:
    """How many containers deep `value` goes: `1` is 0, `[]` is 1, `[[]]` 2; counting stops
    past the limit."""
    depth, level = 0, [value]
    while depth <= MAX_JSON_DEPTH:
        containers = [node for node in level if isinstance(node, dict | list)]
        if not containers:
            break
        depth += 1
        level = [
            child
            for node in containers
            for child in (node.values() if isinstance(node, dict) else node)
        ]
    return depth


def _shown(path: str) -> str:
    return path or "(body)"


def _non_finite_message(literal: str, path: str) -> str:
    if literal in ("NaN", "Infinity", "-Infinity"):
        why = "JSON has no NaN or Infinity"
    else:
        literal, why = literal[:40] + ("..." if len(literal) > 40 else ""), "it overflows a float"
    return f"{literal} at {_shown(path)} is not a finite JSON number ({why})"


def _malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_json", message)
