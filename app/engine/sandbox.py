"""The Jinja2 sandbox templates run in, and the work it lets one render do (issue 13).

Jinja's ImmutableSandboxedEnvironment stops a template from reaching Python's internals or
mutating its context; it does not stop one from working without end. So, apart from the node's
timeout (thread pools and standalone have no SIGALRM): every loop iteration, item a `range`
yields and call (macro, method, `loop()`) spends one of MAX_TEMPLATE_STEPS; `*` and `**` are
capped in size; mixed text stops at MAX_OUTPUT_CHARS; a render past its `until` stops too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2 import StrictUndefined, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, safe_range

from app.errors import NodeTimeout

__all__ = [
    "ENV",
    "HELPERS",
    "MAX_OUTPUT_CHARS",
    "MAX_POWER_BITS",
    "MAX_REPEAT_LENGTH",
    "MAX_TEMPLATE_STEPS",
    "OBJECT_HELPERS",
    "Refused",
    "Renderer",
    "not_data",
    "render_text",
    "within_budget",
]

#: `'x' * n` and `[0] * n` may build at most this many items (n can come from a payload).
MAX_REPEAT_LENGTH = 1_000_000
#: `a ** b` on integers may produce at most this many bits (`10 ** 10 ** 10` would never end).
MAX_POWER_BITS = 100_000
#: Loop iterations, range items and calls one render may spend, all together: nested loops
#: multiply (`range(100000)` twice is 10**10) and a macro calling itself twice doubles per level.
MAX_TEMPLATE_STEPS = 100_000
#: Characters mixed text may render to: the largest response a node fetches (10 MiB, the
#: default DUALMCP_HTTP_MAX_RESPONSE_BYTES) still fits in a prompt; a loop cannot grow past it.
MAX_OUTPUT_CHARS = 10 * 1024 * 1024

#: (context, until) -> value; `until` is a time.monotonic() after which rendering stops.
Renderer = Callable[[Mapping[str, Any], float | None], Any]
#: Dotted name of the function every `{% for %}` iterates through (see _Sandbox._parse).
_LOOP_ITEMS = f"{__name__}._loop_items"


class Refused(jinja2.TemplateError):
    """A template the engine will not run or finish: its message is shown as it is."""


class _Budget:
    """The steps left to one render, and the time it must end by: without SIGALRM nothing else
    stops it at the node's timeout, and 100,000 slow steps (`s | replace(..)` on a long `s`)
    can take minutes."""

    __slots__ = ("left", "until")

    def __init__(self, until: float | None = None) -> None:
        self.left = MAX_TEMPLATE_STEPS
        self.until = until

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise Refused(f"template exceeded {MAX_TEMPLATE_STEPS} loop iterations and calls")
        if self.until is not None and time.monotonic() > self.until:
            raise NodeTimeout("timed out while rendering")


_BUDGET: ContextVar[_Budget] = ContextVar("template_budget")


def _budget() -> _Budget:
    """The running render's budget (outside a render, a fresh one: still a bound)."""
    return _BUDGET.get(None) or _Budget()


def within_budget(render: Callable[[Mapping[str, Any]], Any]) -> Renderer:
    """`render` with a budget of its own for each call."""

    def budgeted(context: Mapping[str, Any], until: float | None) -> Any:
        token = _BUDGET.set(_Budget(until))
        try:
            return render(context)
        finally:
            _BUDGET.reset(token)

    return budgeted


def render_text(template: jinja2.Template, context: Mapping[str, Any]) -> str:
    """Mixed text, streamed so that it stops as soon as it grows past MAX_OUTPUT_CHARS."""
    chunks: list[str] = []
    size = 0
    for chunk in template.root_render_func(template.new_context(dict(context))):
        size += len(chunk)
        if size > MAX_OUTPUT_CHARS:
            raise Refused(f"template output exceeded {MAX_OUTPUT_CHARS} characters")
        chunks.append(chunk)
    return "".join(chunks)


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus caps on the two operators that can allocate without bound,
    and on the steps a render may take (loops and calls)."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            _check_power(left, right)
        else:
            _check_repeat(left, right)
        return super().call_binop(context, operator, left, right)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _budget().spend()
        return super().call(context, obj, *args, **kwargs)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Every `{% for %}` iterates through _loop_items, which counts the iterations."""
        template = super()._parse(source, name, filename)
        for loop in list(template.find_all(nodes.For)):
            counter = nodes.ImportedName(_LOOP_ITEMS, lineno=loop.iter.lineno)
            loop.iter = nodes.Call(counter, [loop.iter], [], None, None, lineno=loop.iter.lineno)
        return template


class _Range:
    """What `range()` gives templates: a range whose items are counted as they are produced,
    once, whether a loop or a filter (`| list`, `| join`) consumes them."""

    __slots__ = ("_items",)

    def __init__(self, items: range) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __getitem__(self, index: int | slice) -> int | _Range:
        if isinstance(index, slice):
            return _Range(self._items[index])
        return self._items[index]

    def __iter__(self) -> Iterator[int]:
        return _counted(self._items)

    def __reversed__(self) -> Iterator[int]:
        return _counted(reversed(self._items))

    def __repr__(self) -> str:
        return repr(self._items)


def _range(*args: int) -> _Range:
    try:
        return _Range(safe_range(*args))
    except OverflowError:
        raise Refused(f"range() may make at most {MAX_RANGE} items") from None


def _loop_items(items: Any) -> Any:
    """What a `{% for %}` iterates: `items`, each one spending a step."""
    return items if isinstance(items, _Range) else _counted(items)


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    budget = _budget()
    for item in items:
        budget.spend()
        yield item


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
    """Mixed text shows dicts and lists as JSON, which is what a prompt or a body wants; an
    object that is not data (`range(3)`, `x.items()`) is refused, not shown as its repr."""
    if isinstance(value, str | int | float) or value is None or isinstance(value, Undefined):
        return value  # (an undefined value fails as it is shown)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=_refuse_nested, ensure_ascii=False)
    raise Refused(not_data(value))


def _refuse_nested(value: Any) -> Any:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    raise Refused(not_data(value))


def not_data(value: Any) -> str:
    """Names the type only: an engine object's, never a value from data (data is JSON)."""
    hint = "; add `| list`" if isinstance(value, Iterable) else ""
    return (
        f"the value is a {type(value).__name__}, not data (text, a number, true/false, "
        f"null, a list or an object){hint}"
    )


ENV = _Sandbox(
    undefined=StrictUndefined,
    finalize=_finalize,
    autoescape=False,
    keep_trailing_newline=True,
)
ENV.globals["range"] = _range
del ENV.globals["lipsum"]  # lorem ipsum has no use in a workflow, and lipsum(10**6) burns CPU
#: The sandbox's helpers (range, dict, cycler, joiner, namespace): functions, used by calling.
HELPERS = frozenset(ENV.globals)
#: Helpers whose result is an object, not a value a param can hold.
OBJECT_HELPERS = frozenset({"range", "cycler", "joiner", "namespace"})
