"""Params templates and conditions in Jinja2's sandbox (DESIGN.md: Templating safety).

Templates come only from workflow definitions; trigger payloads and node outputs reach them as
values of the context and are never rendered again, so data cannot become code. Error messages
name the param path and the template text, never a context value (they are stored and shown).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from app.engine.paths import child_path
from app.errors import TemplateError

__all__ = [
    "condition_error",
    "contains_template",
    "evaluate_condition",
    "render_params",
    "template_errors",
]

#: `'x' * n` and `[0] * n` may build at most this many items (n can come from a payload).
MAX_REPEAT_LENGTH = 1_000_000
#: `a ** b` on integers may produce at most this many bits (`10 ** 10 ** 10` would never end).
MAX_POWER_BITS = 100_000
_MARKERS = ("{{", "{%")
_UNDEFINED_NAME = re.compile(
    r"has no (?:attribute|element) (?P<attr>.+)$|^(?P<var>.+) is undefined$"
)

Renderer = Callable[[Mapping[str, Any]], Any]
#: What a bad template or bad data can raise. Anything else (a worker's time limit, say) is not
#: the template's fault and must pass through unchanged.
_RENDER_ERRORS = (
    jinja2.TemplateError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    RuntimeError,
)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus caps on the two operators that can allocate without bound."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        else:
            _check_repeat(left, right)
        return super().call_binop(context, operator, left, right)


def _check_power(base: Any, exponent: Any) -> None:
    integers = isinstance(base, int) and isinstance(exponent, int) and exponent > 0
    if integers and max(abs(base).bit_length(), 1) * exponent > MAX_POWER_BITS:
        raise SecurityError("the result of ** would be too large")


def _check_repeat(left: Any, right: Any) -> None:
    for seq, count in ((left, right), (right, left)):
        repeats = isinstance(seq, str | list | tuple) and isinstance(count, int)
        if repeats and len(seq) * count > MAX_REPEAT_LENGTH:
            raise SecurityError("the result of * would be too long")
    integers = isinstance(left, int) and isinstance(right, int)
    if integers and left.bit_length() + right.bit_length() > MAX_POWER_BITS:
        raise SecurityError("the result of * would be too large")


def _finalize(value: Any) -> Any:
    """Mixed text shows dicts and lists as JSON, which is what a prompt or a body wants."""
    if isinstance(value, Mapping | list | tuple) and not isinstance(value, Undefined):
        return json.dumps(value, default=str, ensure_ascii=False)
    return value


_ENV = _Sandbox(
    undefined=StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=True,
)


def contains_template(value: Any) -> bool:
    """True if `value`, or any string nested in its dicts and lists, holds `{{` or `{%`."""
    if isinstance(value, str):
        return any(marker in value for marker in _MARKERS)
    if isinstance(value, Mapping):
        return any(contains_template(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(contains_template(item) for item in value)
    return False


def render_params(params: Any, context: Mapping[str, Any], *, path: str = "params") -> Any:
    """Render every template string nested in `params`; other values are returned as they are.

    A string that is exactly one `{{ expr }}` keeps the expression's type; mixed text is a string.
    """
    if isinstance(params, str):
        if not contains_template(params):
            return params
        try:
            return _compile_template(params)(context)
        except _RENDER_ERRORS as exc:
            raise _template_error(path, "template", params, exc) from None
    if isinstance(params, Mapping):
        return {
            key: render_params(value, context, path=child_path(path, str(key)))
            for key, value in params.items()
        }
    if isinstance(params, list | tuple):
        return [
            render_params(item, context, path=child_path(path, index))
            for index, item in enumerate(params)
        ]
    return params


def evaluate_condition(expression: str | bool, context: Mapping[str, Any]) -> bool:
    """Evaluate a conditional's expression (bare, or wrapped in `{{ }}`) to a bool."""
    if isinstance(expression, bool):
        return expression
    if not isinstance(expression, str):
        raise TemplateError("condition: must be an expression or a boolean")
    try:
        return bool(_compile_condition(expression)(context))
    except _RENDER_ERRORS as exc:
        raise _template_error("condition", "expression", expression, exc) from None


def template_errors(value: Any, path: str) -> list[tuple[str, str]]:
    """(path, message) for every template nested in `value` that does not compile.

    Used when a definition is saved, so a typo is reported then rather than mid-run.
    """
    if isinstance(value, str):
        if not contains_template(value):
            return []
        try:
            _compile_template(value)
        except _RENDER_ERRORS as exc:
            return [(path, _describe(exc, value))]
        return []
    if isinstance(value, Mapping):
        return [
            error
            for key, item in value.items()
            for error in template_errors(item, child_path(path, str(key)))
        ]
    if isinstance(value, list | tuple):
        return [
            error
            for index, item in enumerate(value)
            for error in template_errors(item, child_path(path, index))
        ]
    return []


def condition_error(expression: Any) -> str | None:
    """Why `expression` cannot be a condition, or None when it compiles (or is a bool)."""
    if isinstance(expression, bool):
        return None
    if not isinstance(expression, str):
        return "a condition must be an expression or a boolean"
    try:
        _compile_condition(expression)
    except _RENDER_ERRORS as exc:
        return _describe(exc, expression)
    return None


@lru_cache(maxsize=4096)
def _compile_template(source: str) -> Renderer:
    """Compile once per distinct source; definitions repeat the same templates on every run."""
    stripped = source.strip()
    if _is_single_expression(stripped):
        expression = _ENV.compile_expression(_inner_expression(stripped), undefined_to_none=False)
        return lambda context: _require_defined(expression(context))
    template = _ENV.from_string(source)
    return template.render


@lru_cache(maxsize=4096)
def _compile_condition(source: str) -> Renderer:
    stripped = source.strip()
    if any(marker in stripped for marker in _MARKERS):
        _ENV.parse(stripped)  # a syntax error first: it says more than "not one expression"
        if not _is_single_expression(stripped):
            raise TemplateSyntaxError(
                "a condition is one expression, e.g. `a >= 80` or `{{ a >= 80 }}`", 1
            )
        stripped = _inner_expression(stripped)
    expression = _ENV.compile_expression(stripped, undefined_to_none=False)
    return lambda context: _require_defined(expression(context))


def _is_single_expression(stripped: str) -> bool:
    """True when the whole (stripped) source is one `{{ expr }}` and nothing else."""
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return False
    body = _ENV.parse(stripped).body
    return (
        len(body) == 1
        and isinstance(body[0], nodes.Output)
        and len(body[0].nodes) == 1
        and not isinstance(body[0].nodes[0], nodes.TemplateData)
    )


def _inner_expression(stripped: str) -> str:
    """The text between `{{` and `}}`, without Jinja's whitespace-control markers."""
    inner = stripped[2:-2]
    if inner[:1] in ("-", "+"):
        inner = inner[1:]
    if inner.endswith("-"):
        inner = inner[:-1]
    return inner


def _require_defined(value: Any) -> Any:
    """Fail on an undefined result, also one nested in a list or dict literal like `[x.missing]`."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, Mapping):
        for item in value.values():
            _require_defined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _require_defined(item)
    return value


def _template_error(where: str, kind: str, source: str, exc: Exception) -> TemplateError:
    return TemplateError(f"{where}: {_describe(exc, source)} in {kind} {_quote(source)}")


def _describe(exc: Exception, source: str) -> str:
    """A reason built only from the template and Jinja's own words, never from context values."""
    if isinstance(exc, TemplateSyntaxError):
        line = f" (line {exc.lineno})" if "\n" in source.strip() else ""
        return f"syntax error: {(exc.message or '').rstrip('.')}{line}"
    if isinstance(exc, UndefinedError):
        match = _UNDEFINED_NAME.search(exc.message or "")
        name = (match.group("attr") or match.group("var")).strip("'\"") if match else ""
        # A name looked up dynamically (x[trigger.key]) comes from data: do not echo it.
        if name and name in source:
            return f"undefined: {exc.message}".rstrip(".")
        return "undefined: a value used here is undefined"
    if isinstance(exc, SecurityError):
        return f"blocked by the sandbox: {exc.message}".rstrip(".")
    return f"{type(exc).__name__} while evaluating"


def _quote(source: str, limit: int = 200) -> str:
    text = source if len(source) <= limit else source[: limit - 3] + "..."
    return repr(text)
