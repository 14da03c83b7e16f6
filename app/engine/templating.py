"""Params templates and conditions in Jinja2's sandbox (DESIGN.md: Templating safety).

Templates come only from workflow definitions; trigger payloads and node outputs reach them as
values of the context and are never rendered again, so data cannot become code. Error messages
name the param path and the template text, never a context value (they are stored and shown).

What a param renders to is data (text, numbers, booleans, null, lists, objects), never an
engine object such as `self`; what can be refused before a run (`self`, a name the context lacks)
is refused when the definition is saved. The work one render may do: app/engine/sandbox.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import TemplateSyntaxError, Undefined, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser

from app.engine.paths import child_path
from app.engine.sandbox import (
    ENV,
    HELPERS,
    OBJECT_HELPERS,
    Refused,
    Renderer,
    not_data,
    render_text,
    within_budget,
)
from app.errors import TemplateError

__all__ = [
    "CONTEXT_NAMES",
    "condition_error",
    "contains_template",
    "evaluate_condition",
    "render_params",
    "template_errors",
]

#: What templates see (app/workflows/execution.py Lease.template_context; DESIGN.md).
CONTEXT_NAMES = ("trigger", "nodes", "run", "agent")
_SEEN = f"templates see {', '.join(CONTEXT_NAMES[:-1])} and {CONTEXT_NAMES[-1]}"
_MARKERS = ("{{", "{%")
_UNDEFINED_NAME = re.compile(
    r"has no (?:attribute|element) (?P<attr>.+)$|^(?P<var>.+) is undefined$"
)

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
    MemoryError,
    NameError,  # Jinja's constant folding can emit a bare `nan` or `inf` (`"nan" | float`)
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


def render_params(
    params: Any, context: Mapping[str, Any], *, path: str = "params", until: float | None = None
) -> Any:
    """Render every template string nested in `params`; other values are returned as they are.

    A string that is exactly one `{{ expr }}` keeps the expression's type; mixed text is a string.
    Past `until` (a time.monotonic()), a render still looping raises NodeTimeout.
    """
    if isinstance(params, str):
        if not contains_template(params):
            return params
        try:
            return _compile_template(params)(context, until)
        except _RENDER_ERRORS as exc:
            raise _template_error(path, "template", params, exc) from None
    if isinstance(params, Mapping):
        return {
            key: render_params(value, context, path=child_path(path, str(key)), until=until)
            for key, value in params.items()
        }
    if isinstance(params, list | tuple):
        return [
            render_params(item, context, path=child_path(path, index), until=until)
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
        return bool(_compile_condition(expression)(context, None))
    except _RENDER_ERRORS as exc:
        raise _template_error("condition", "expression", expression, exc) from None


def template_errors(value: Any, path: str) -> list[tuple[str, str]]:
    """(path, message) for every template nested in `value` that cannot render.

    Used when a definition is saved, so a typo is reported then rather than mid-run: a syntax
    error, what the engine refuses (`self`, a helper used as a value), a name the context lacks.
    """
    if isinstance(value, str):
        if not contains_template(value):
            return []
        try:
            _compile_template(value)
            unknown = _unknown_names(ENV.parse(value))
        except _RENDER_ERRORS as exc:
            return [(path, _describe(exc, value))]
        return [(path, unknown)] if unknown else []
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
        stripped = expression.strip()
        if _is_single_expression(stripped):
            stripped = _inner_expression(stripped)
        tree = nodes.Template([nodes.Output([_parse_expression(stripped)])])
        tree.set_environment(ENV)
        return _unknown_names(tree)
    except _RENDER_ERRORS as exc:
        return _describe(exc, expression)


@lru_cache(maxsize=4096)
def _compile_template(source: str) -> Renderer:
    """Compile once per distinct source; definitions repeat the same templates on every run."""
    stripped = source.strip()
    if _is_single_expression(stripped):
        inner = _inner_expression(stripped)
        expression = ENV.compile_expression(inner, undefined_to_none=False)
        _refuse_unsupported(_parse_expression(inner), whole_value=True)
        return within_budget(lambda context: _require_data(expression(context)))
    tree = ENV.parse(source)
    _refuse_unsupported(tree)
    template = ENV.from_string(tree)
    return within_budget(lambda context: render_text(template, context))


@lru_cache(maxsize=4096)
def _compile_condition(source: str) -> Renderer:
    stripped = source.strip()
    if any(marker in stripped for marker in _MARKERS):
        ENV.parse(stripped)  # a syntax error first: it says more than "not one expression"
        if not _is_single_expression(stripped):
            raise TemplateSyntaxError(
                "a condition is one expression, e.g. `a >= 80` or `{{ a >= 80 }}`", 1
            )
        stripped = _inner_expression(stripped)
    expression = ENV.compile_expression(stripped, undefined_to_none=False)
    _refuse_unsupported(_parse_expression(stripped))
    return within_budget(lambda context: _require_defined(expression(context)))


def _parse_expression(source: str) -> nodes.Expr:
    """The syntax tree of a bare expression (as compile_expression reads it)."""
    expression = Parser(ENV, source, state="variable").parse_expression()
    expression.set_environment(ENV)
    return expression


def _refuse_unsupported(tree: nodes.Node, *, whole_value: bool = False) -> None:
    """Refuse, at compile time and so when a definition is saved, what never renders to data:
    `self` (Jinja's template reference), a helper used as a value (`{{ range }}`) and, as the
    whole value of a param, a helper's object (`{{ range(3) }}`, `{{ namespace() }}`)."""
    found = [tree, *tree.find_all(nodes.Node)]
    names = [node for node in found if isinstance(node, nodes.Name)]
    if any(name.name == "self" for name in names):
        raise Refused(f"`self` is not available: {_SEEN}")
    declared = {name.name for name in names if name.ctx != "load"}
    called = {id(node.node) for node in found if isinstance(node, nodes.Call)}
    for name in names:
        helper = name.name
        if helper in HELPERS and helper not in declared and id(name) not in called:
            raise Refused(f"`{helper}` is a function: call it, e.g. `{helper}(...)`")
    if (
        whole_value
        and isinstance(tree, nodes.Call)
        and isinstance(tree.node, nodes.Name)
        and tree.node.name in OBJECT_HELPERS
    ):
        helper = tree.node.name
        hint = ": add `| list`" if helper == "range" else ""
        raise Refused(f"`{helper}(...)` makes an object, not a value a param can hold{hint}")


def _unknown_names(tree: nodes.Template) -> str | None:
    """Why `tree` reads a name that is neither in the context nor one of the helpers."""
    unknown = sorted(meta.find_undeclared_variables(tree) - set(CONTEXT_NAMES))
    if not unknown:
        return None
    return f"unknown name {unknown[0]!r}: {_SEEN}"


def _is_single_expression(stripped: str) -> bool:
    """True when the whole (stripped) source is one `{{ expr }}` and nothing else."""
    if not (stripped.startswith("{{") and stripped.endswith("}}")):
        return False
    body = ENV.parse(stripped).body
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


def _require_data(value: Any) -> Any:
    """The value of a param that is one `{{ expr }}`: JSON data, every part of it defined
    (also in a literal like `[x.missing]`), no engine object (`range(3)`, `x.items()`)."""
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, dict):
        for key, item in value.items():
            if not (isinstance(key, str | int | float | bool) or key is None):
                raise Refused(f"an object's key is a {type(key).__name__}, not text")
            _require_data(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _require_data(item)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise Refused("the value is not a finite number")
    elif isinstance(value, Undefined):
        value._fail_with_undefined_error()
    else:
        raise Refused(not_data(value))
    return value


def _require_defined(value: Any) -> Any:
    """A condition's value: fail on an undefined result, also one nested in `[x.missing]`."""
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
    if isinstance(exc, Refused):
        return exc.message or "refused"
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
