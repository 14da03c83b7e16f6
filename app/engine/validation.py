"""Validate a workflow definition when it is saved, listing every problem in one answer.

Each problem has a code and a path into the user's JSON (`nodes[2].retry.max_attempts`), so a
client can point at the field. Checks (DESIGN.md: Workflow definition): schema, unique ids, known
types, existing references, no cycles, every node reachable, params valid for the driver; and
for a workflow that is a tool, a name /mcp does not serve itself and a valid object JSON Schema.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012, specification_with

from app.engine.graph import find_cycles, reachable
from app.engine.paths import child_path
from app.engine.schema import (
    CONDITIONAL_NODE_TYPE,
    NodeDefinition,
    WorkflowDefinition,
    input_schema_dialect,
    is_reserved_tool_name,
)
from app.engine.templating import condition_error, contains_template, template_errors
from app.errors import DefinitionInvalid

__all__ = ["Problem", "check_definition", "input_schema_problems", "validate_definition"]

#: pydantic errors about which fields are there, true whatever a template renders to.
_SHAPE_ERRORS = frozenset({"missing", "extra_forbidden"})
#: Longest message quoted from jsonschema about a user's input schema.
_MAX_SCHEMA_MESSAGE = 300
#: Keywords whose values are data, not subschemas: a `$ref` key inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})
#: Keywords whose values map names to subschemas (a property may be called "default").
_SCHEMA_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a definition; `path` points into the submitted JSON."""

    code: str
    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "path": self.path, "message": self.message}


def check_definition(
    raw: Mapping[str, Any], param_schemas: Mapping[str, type[BaseModel]]
) -> WorkflowDefinition:
    """The parsed definition, or DefinitionInvalid carrying every problem."""
    definition, problems = validate_definition(raw, param_schemas)
    if problems or definition is None:
        raise DefinitionInvalid(problems)
    return definition


def validate_definition(
    raw: Mapping[str, Any], param_schemas: Mapping[str, type[BaseModel]]
) -> tuple[WorkflowDefinition | None, list[Problem]]:
    """Every problem at once; the definition is None when its shape is too broken to build.

    `param_schemas` maps each known node type to its driver's Params model: the engine cannot
    import drivers, so the caller passes the registry's view in.
    """
    if not isinstance(raw, Mapping):
        return None, [Problem("invalid_schema", "", "a workflow definition must be a JSON object")]
    definition: WorkflowDefinition | None = None
    problems: list[Problem] = []
    try:
        definition = WorkflowDefinition.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc, raw, "invalid_schema", ""))
    graph = _Graph.of(definition) if definition is not None else _Graph.salvage(raw)
    problems.extend(_graph_problems(graph, param_schemas))
    problems.extend(_tool_problems(raw.get("tool")))
    return definition, problems


@dataclass
class _Graph:
    """The nodes that parsed, with their index in `nodes`, and what is known of the rest."""

    nodes: list[tuple[int, NodeDefinition]]
    #: (index, id) of every node that has a string id, parsed or not.
    ids: list[tuple[int, str]]
    start: str | None
    #: True when every node (and `start`) parsed: only then is "unreachable" meaningful.
    complete: bool
    edges: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, definition: WorkflowDefinition) -> _Graph:
        nodes = list(enumerate(definition.nodes))
        ids = [(index, node.id) for index, node in nodes]
        return cls(nodes, ids, definition.start, complete=True)

    @classmethod
    def salvage(cls, raw: Mapping[str, Any]) -> _Graph:
        """Keep the nodes that parse on their own, so graph problems are reported too."""
        raw_nodes = raw.get("nodes")
        nodes: list[tuple[int, NodeDefinition]] = []
        ids: list[tuple[int, str]] = []
        if isinstance(raw_nodes, list):
            for index, raw_node in enumerate(raw_nodes):
                if isinstance(raw_node, Mapping) and isinstance(raw_node.get("id"), str):
                    ids.append((index, raw_node["id"]))
                with contextlib.suppress(ValidationError):
                    nodes.append((index, NodeDefinition.model_validate(raw_node)))
        start = raw.get("start")
        every_node_parsed = isinstance(raw_nodes, list) and len(nodes) == len(raw_nodes) > 0
        complete = every_node_parsed and (start is None or isinstance(start, str))
        return cls(nodes, ids, start if isinstance(start, str) else None, complete=complete)

    def __post_init__(self) -> None:
        known = self.known
        for _, node in self.nodes:
            self.edges.setdefault(node.id, [])
            self.edges[node.id].extend(t for t in node.successor_ids if t in known)

    @property
    def known(self) -> set[str]:
        return {node_id for _, node_id in self.ids}

    def first_index(self) -> dict[str, int]:
        first: dict[str, int] = {}
        for index, node_id in self.ids:
            first.setdefault(node_id, index)
        return first


def _graph_problems(graph: _Graph, param_schemas: Mapping[str, type[BaseModel]]) -> list[Problem]:
    problems: list[Problem] = []
    known = graph.known
    if graph.start is not None and graph.start not in known:
        problems.append(_unknown_reference("start", graph.start, known))
    problems.extend(_duplicate_ids(graph.ids))
    for index, node in graph.nodes:
        base = f"nodes[{index}]"
        problems.extend(_type_problems(base, node, param_schemas))
        problems.extend(_branch_problems(base, node))
        problems.extend(_reference_problems(base, node, known))
    first = graph.first_index()
    order = list(first)
    for cycle in find_cycles(order, graph.edges):
        path = f"nodes[{first[cycle[0]]}]"
        problems.append(Problem("cycle", path, f"cycle: {' -> '.join(cycle)}"))
    entry = graph.start or (graph.ids[0][1] if graph.ids else None)
    if graph.complete and entry is not None and entry in known:
        seen = reachable(entry, graph.edges)
        for node_id, index in first.items():
            if node_id not in seen:
                message = f"node {node_id!r} is not reachable from the entry {entry!r}"
                problems.append(Problem("unreachable", f"nodes[{index}]", message))
    return problems


def _duplicate_ids(ids: Iterable[tuple[int, str]]) -> list[Problem]:
    first: dict[str, int] = {}
    problems = []
    for index, node_id in ids:
        if node_id in first:
            message = f"node id {node_id!r} is already used by nodes[{first[node_id]}]"
            problems.append(Problem("duplicate_id", f"nodes[{index}].id", message))
        else:
            first[node_id] = index
    return problems


def _type_problems(
    base: str, node: NodeDefinition, param_schemas: Mapping[str, type[BaseModel]]
) -> list[Problem]:
    schema = param_schemas.get(node.type)
    if schema is None:
        message = f"unknown node type {node.type!r}" + _did_you_mean(node.type, param_schemas)
        return [Problem("unknown_type", f"{base}.type", message)]
    return _param_problems(f"{base}.params", node, schema)


def _param_problems(base: str, node: NodeDefinition, schema: type[BaseModel]) -> list[Problem]:
    """The driver's Params checks, minus those a template's rendered value could still satisfy."""
    problems: list[Problem] = []
    try:
        schema.model_validate(node.params)
    except ValidationError as exc:
        kept = [
            error
            for error in exc.errors(include_url=False)
            if error["type"] in _SHAPE_ERRORS or not _blames_template(node.params, error["loc"])
        ]
        if kept:
            problems.extend(_pydantic_problems(kept, node.params, "invalid_params", base))
    condition_path = f"{base}.condition"
    for path, message in template_errors(node.params, base):
        if not (node.type == CONDITIONAL_NODE_TYPE and path == condition_path):
            problems.append(Problem("invalid_template", path, message))
    condition = node.params.get("condition")
    if node.type == CONDITIONAL_NODE_TYPE and isinstance(condition, str):
        reason = condition_error(condition)
        if reason is not None:
            problems.append(Problem("invalid_params", condition_path, reason))
    return problems


def _blames_template(params: Mapping[str, Any], loc: Sequence[str | int]) -> bool:
    """True when the error sits at (or inside) a template string, whose value is not known yet."""
    if not loc:  # a model-level check: it may depend on any templated field
        return contains_template(params)
    value: Any = params
    for key in loc:
        if not _has_item(value, key):
            continue  # a union member's tag or a missing field: not in the user's data
        value = value[key]
        if isinstance(value, str) and contains_template(value):
            return True
    return False


def _has_item(value: Any, key: str | int) -> bool:
    if isinstance(value, Mapping):
        return key in value
    return isinstance(value, list | tuple) and isinstance(key, int) and 0 <= key < len(value)


def _branch_problems(base: str, node: NodeDefinition) -> list[Problem]:
    """A conditional routes with then/else only; every other node with next only."""
    problems = []
    if node.type == CONDITIONAL_NODE_TYPE:
        if node.then is None and node.else_ is None:
            message = "a conditional node needs `then` or `else`"
            problems.append(Problem("branch_misuse", base, message))
        if node.next is not None:
            message = "a conditional node routes with `then` and `else`, not `next`"
            problems.append(Problem("branch_misuse", f"{base}.next", message))
        return problems
    for name, target in (("then", node.then), ("else", node.else_)):
        if target is not None:
            message = f"only a conditional node may use `{name}`; use `next`"
            problems.append(Problem("branch_misuse", f"{base}.{name}", message))
    return problems


def _reference_problems(base: str, node: NodeDefinition, known: set[str]) -> list[Problem]:
    refs: list[tuple[str, str]] = []
    if isinstance(node.next, str):
        refs.append((f"{base}.next", node.next))
    elif node.next is not None:
        refs.extend((f"{base}.next[{i}]", target) for i, target in enumerate(node.next))
    refs.extend(
        (f"{base}.{name}", t) for name, t in (("then", node.then), ("else", node.else_)) if t
    )
    return [_unknown_reference(path, target, known) for path, target in refs if target not in known]


def _unknown_reference(path: str, target: str, known: set[str]) -> Problem:
    message = f"no node has the id {target!r}" + _did_you_mean(target, known)
    return Problem("unknown_reference", path, message)


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    match = difflib.get_close_matches(word, options, n=1)
    if match:
        return f"; did you mean {match[0]!r}?"
    return f"; known: {', '.join(options)}" if options and len(options) <= 20 else ""


def _tool_problems(tool: Any) -> list[Problem]:
    """What the ToolBlock model cannot say, read from the raw block so it is reported even when
    another field of it is wrong (the model reports those)."""
    if not isinstance(tool, Mapping):
        return []
    problems = []
    name = tool.get("name")
    if isinstance(name, str) and is_reserved_tool_name(name):
        message = f"{name!r} is reserved: /mcp serves get_run and ask_<agent_id> itself"
        problems.append(Problem("reserved_tool_name", "tool.name", message))
    schema = tool.get("input_schema")
    if isinstance(schema, Mapping):
        problems.extend(input_schema_problems(schema, "tool.input_schema"))
    return problems


def input_schema_problems(schema: Mapping[str, Any], base: str) -> list[Problem]:
    """Every reason `schema` cannot be a tool's input schema: a known dialect, valid against its
    meta-schema, `"type": "object"` at the top (MCP and the LLM providers require it), and
    `$ref`s that resolve inside the schema (nothing is fetched)."""
    cls = input_schema_dialect(schema)
    if cls is None:
        message = "unknown JSON Schema dialect; leave `$schema` out for draft 2020-12"
        return [Problem("invalid_input_schema", child_path(base, "$schema"), message)]
    problems = []
    meta = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    for error in meta.iter_errors(schema):
        path = base
        for key in error.absolute_path:
            path = child_path(path, key)
        message = error.message
        if len(message) > _MAX_SCHEMA_MESSAGE:
            message = message[: _MAX_SCHEMA_MESSAGE - 3] + "..."
        problems.append(Problem("invalid_input_schema", path, message))
    if schema.get("type") != "object":
        message = 'a tool\'s input schema must have "type": "object" at the top'
        problems.append(Problem("invalid_input_schema", child_path(base, "type"), message))
    problems.extend(_schema_reference_problems(schema, base, cls.META_SCHEMA.get("$id", "")))
    return sorted(problems, key=lambda problem: problem.path)


def _schema_reference_problems(schema: Mapping[str, Any], base: str, dialect: str) -> list[Problem]:
    """`$ref` and `$dynamicRef` must point inside the schema ("#/$defs/x", "#anchor")."""
    resource = specification_with(dialect, default=DRAFT202012).create_resource(schema)
    resolver = Registry().resolver_with_root(resource)
    problems = []
    for path, ref in _references(schema, base):
        if not ref.startswith("#"):
            message = 'only references inside the schema ("#/$defs/...") are allowed'
            problems.append(Problem("invalid_input_schema", path, message))
            continue
        try:
            resolver.lookup(ref)
        except Unresolvable:
            message = f"{ref!r} points to nothing in the schema"
            problems.append(Problem("invalid_input_schema", path, message))
    return problems


def _references(value: Any, path: str, *, names: bool = False) -> Iterable[tuple[str, str]]:
    """(path, target) of every reference; `names` when `value` maps names to subschemas."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            child = child_path(path, key)
            if names:
                yield from _references(item, child)
            elif key in ("$ref", "$dynamicRef"):
                if isinstance(item, str):
                    yield child, item
            elif key not in _DATA_KEYWORDS:
                yield from _references(item, child, names=key in _SCHEMA_MAPS)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _references(item, child_path(path, index))


def _pydantic_problems(
    errors: ValidationError | Sequence[Any], data: Any, code: str, base: str
) -> list[Problem]:
    """pydantic errors as problems, one per path (a union's per-member errors are merged)."""
    details = errors.errors(include_url=False) if isinstance(errors, ValidationError) else errors
    messages: dict[str, list[str]] = {}
    for error in details:
        path = _loc_path(data, error["loc"], base, missing=error["type"] == "missing")
        message = str(error["msg"]).removeprefix("Value error, ")
        if message not in messages.setdefault(path, []):
            messages[path].append(message)
    return [Problem(code, path, "; ".join(texts)) for path, texts in messages.items()]


def _loc_path(data: Any, loc: Sequence[str | int], base: str, *, missing: bool) -> str:
    """Follow `loc` through the submitted data; elements not in it are union tags, dropped.

    pydantic puts the member's type in the location of a union error (`next.list[str]`), which
    names nothing the user wrote. A missing field is the exception: its name is the point.
    """
    path, value = base, data
    for position, key in enumerate(loc):
        if _has_item(value, key):
            value = value[key]
        elif not (missing and position == len(loc) - 1):
            continue
        path = child_path(path, key)
    return path
