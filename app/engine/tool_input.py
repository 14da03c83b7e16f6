"""A run's input checked against its workflow's `tool.input_schema`, every problem at once.

The same check serves every way a run of a tool workflow starts: `POST /api/workflow/execute`
(paths `input.<field>`), a webhook (paths into the body), a tool call (`arguments.<field>`).
Messages say what the schema wants and never quote the value: inputs may hold secrets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from jsonschema import ValidationError
from jsonschema.protocols import Validator
from referencing.exceptions import Unresolvable

from app.engine.paths import child_path
from app.engine.schema import ToolBlock, compile_input_schema
from app.engine.validation import Problem

__all__ = ["input_problems", "tool_input_problems"]

#: Longest rendering of a schema value (an enum, a const) in a message.
_MAX_SHOWN = 120


def input_problems(
    schema: Mapping[str, Any], value: Any, *, prefix: str = "input"
) -> list[Problem]:
    """Every way `value` breaks `schema`, sorted by path; [] when it matches. `prefix` names
    where the value sits in the request ("input", "arguments", "" for a whole body)."""
    return _problems(_compiled(json.dumps(schema, sort_keys=True)), value, prefix)


def tool_input_problems(tool: ToolBlock, value: Any, *, prefix: str = "input") -> list[Problem]:
    """`input_problems` with the validator the (cached) definition compiled once."""
    return _problems(tool.input_validator, value, prefix)


@lru_cache(maxsize=1024)
def _compiled(canonical_schema: str) -> Validator:
    """One validator per distinct schema, keyed on its canonical JSON."""
    return compile_input_schema(json.loads(canonical_schema))


def _problems(validator: Validator, value: Any, prefix: str) -> list[Problem]:
    try:
        errors = list(validator.iter_errors(value))
    except Unresolvable:  # only a schema that skipped the save-time checks gets here
        return [Problem("invalid_input_schema", prefix, "the input schema has a broken $ref")]
    found: dict[Problem, None] = {}  # ordered and without repeats
    for error in errors:
        found.update(dict.fromkeys(_explain(error, prefix)))
    return sorted(found, key=lambda problem: problem.path)


def _explain(error: ValidationError, prefix: str) -> Iterable[Problem]:
    path = prefix
    for key in error.absolute_path:
        path = child_path(path, key)
    # A `false` subschema's error names no keyword, and jsonschema 4.26 drops its path too.
    kind = "forbidden" if error.validator is None else str(error.validator)
    wanted: Any = error.validator_value
    instance = error.instance
    if kind == "required" and isinstance(instance, Mapping):
        # A missing property is named by its own path: that is the field to fill in.
        for name in wanted:
            if name not in instance:
                yield Problem("missing", child_path(path, name), "is required")
        return
    if kind == "dependentRequired" and isinstance(instance, Mapping):
        for given, needed in wanted.items():
            for name in needed if given in instance else ():
                if name not in instance:
                    message = f"is required when {given!r} is given"
                    yield Problem("missing", child_path(path, name), message)
        return
    if kind == "additionalProperties" and isinstance(instance, Mapping):
        for name in _additional(instance, error.schema):
            yield Problem(kind, child_path(path, name), "is not a property the schema allows")
        return
    yield Problem(kind, path, _message(kind, wanted))


def _additional(instance: Mapping[str, Any], schema: Any) -> list[str]:
    """The properties neither `properties` nor `patternProperties` of `schema` name."""
    if not isinstance(schema, Mapping):
        return []
    named = schema.get("properties") or {}
    patterns = list((schema.get("patternProperties") or {}).keys())
    return [
        name
        for name in instance
        if name not in named and not any(re.search(pattern, name) for pattern in patterns)
    ]


def _message(kind: str, wanted: Any) -> str:
    """What the schema asked for, in words; built from the schema's value, never the input's."""
    fixed = _FIXED.get(kind)
    if fixed is not None:
        return fixed
    template = _TEMPLATES.get(kind)
    if template is not None and not isinstance(wanted, bool):  # draft 4's boolean exclusives
        return template.format(_shown(wanted, kind))
    return f"does not satisfy the schema's `{kind}`"


def _shown(wanted: Any, kind: str) -> str:
    if kind == "type":
        return " or ".join(wanted) if isinstance(wanted, list) else str(wanted)
    if kind in ("pattern", "format"):
        return str(wanted)
    text = json.dumps(wanted)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


_TEMPLATES: dict[str, str] = {
    "type": "must be of type {}",
    "enum": "must be one of {}",
    "const": "must be {}",
    "pattern": "must match the pattern {}",
    "format": "must be a valid {}",
    "minLength": "must be at least {} characters long",
    "maxLength": "must be at most {} characters long",
    "minimum": "must be >= {}",
    "maximum": "must be <= {}",
    "exclusiveMinimum": "must be > {}",
    "exclusiveMaximum": "must be < {}",
    "multipleOf": "must be a multiple of {}",
    "minItems": "must have at least {} items",
    "maxItems": "must have at most {} items",
    "minProperties": "must have at least {} properties",
    "maxProperties": "must have at most {} properties",
    "minContains": "must contain at least {} matching items",
    "maxContains": "must contain at most {} matching items",
}
_FIXED: dict[str, str] = {
    "uniqueItems": "must not contain duplicate items",
    "contains": "must contain an item that matches the schema",
    "anyOf": "must match at least one of the allowed schemas",
    "oneOf": "must match exactly one of the allowed schemas",
    "not": "must not match the excluded schema",
    "unevaluatedProperties": "has properties the schema does not allow",
    "unevaluatedItems": "has items the schema does not allow",
    "propertyNames": "has a property name the schema does not allow",
    "forbidden": "holds a value the schema forbids (a `false` subschema)",
}
