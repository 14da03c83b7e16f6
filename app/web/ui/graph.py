"""A workflow's graph laid out for an inline SVG: columns by depth, drawn on the server.

Definitions are acyclic (the engine refuses cycles), so each node's column is the longest path
to it from the entry and every edge points right. No graph library and no JavaScript: the page
stays readable with scripts off and the drawing is testable without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

NODE_WIDTH = 156
NODE_HEIGHT = 46
COLUMN_PITCH = NODE_WIDTH + 64
ROW_PITCH = NODE_HEIGHT + 22
MARGIN = 10
#: Characters of a node id shown in its box; the whole id is in the box's <title>.
LABEL_CHARS = 18


@dataclass(frozen=True)
class NodeSpec:
    """What the layout needs of one node: its edges in definition order, and its state."""

    node_id: str
    type: str
    status: str
    #: (target node id, edge label): "" for `next`, "then" or "else" for a conditional.
    successors: Sequence[tuple[str, str]] = ()
    #: The branch a finished conditional took ("then" or "else"), from its output.
    branch: str | None = None


@dataclass(frozen=True)
class PlacedNode:
    node_id: str
    type: str
    status: str
    x: int
    y: int
    label: str
    width: int = NODE_WIDTH
    height: int = NODE_HEIGHT


@dataclass(frozen=True)
class PlacedEdge:
    source: str
    target: str
    label: str
    #: True when the run went this way (both ends reached, the conditional's branch).
    taken: bool
    path: str
    label_x: int
    label_y: int


@dataclass(frozen=True)
class Graph:
    nodes: list[PlacedNode] = field(default_factory=list)
    edges: list[PlacedEdge] = field(default_factory=list)
    width: int = 0
    height: int = 0


#: Node statuses that mean the run reached the node.
REACHED = frozenset({"pending", "running", "retrying", "succeeded", "failed", "cancelled"})


def layout(specs: Sequence[NodeSpec]) -> Graph:
    """Place `specs` (the entry first) in columns by depth, each column centred."""
    if not specs:
        return Graph()
    by_id = {spec.node_id: spec for spec in specs}
    depth = _depths(specs, by_id)
    columns: dict[int, list[NodeSpec]] = {}
    for spec in specs:
        columns.setdefault(depth[spec.node_id], []).append(spec)
    tallest = max(len(column) for column in columns.values())
    height = 2 * MARGIN + (tallest - 1) * ROW_PITCH + NODE_HEIGHT
    width = 2 * MARGIN + max(columns) * COLUMN_PITCH + NODE_WIDTH
    placed: dict[str, PlacedNode] = {}
    for column_index, column in columns.items():
        top = MARGIN + (tallest - len(column)) * ROW_PITCH // 2
        for row, spec in enumerate(column):
            placed[spec.node_id] = PlacedNode(
                spec.node_id,
                spec.type,
                spec.status,
                MARGIN + column_index * COLUMN_PITCH,
                top + row * ROW_PITCH,
                _label(spec.node_id),
            )
    edges = [
        _edge(spec, placed[spec.node_id], placed[target], label, by_id[target])
        for spec in specs
        for target, label in spec.successors
        if target in placed
    ]
    return Graph([placed[spec.node_id] for spec in specs], edges, width, height)


def _depths(specs: Sequence[NodeSpec], by_id: dict[str, NodeSpec]) -> dict[str, int]:
    """The longest path from a root to each node (Kahn's order; a cycle, which a saved
    definition cannot hold, leaves its nodes in column 0 rather than looping)."""
    incoming = {spec.node_id: 0 for spec in specs}
    for spec in specs:
        for target, _ in spec.successors:
            if target in incoming:
                incoming[target] += 1
    depth = dict.fromkeys(incoming, 0)
    ready = [spec.node_id for spec in specs if incoming[spec.node_id] == 0]
    while ready:
        node_id = ready.pop(0)
        for target, _ in by_id[node_id].successors:
            if target not in incoming:
                continue
            depth[target] = max(depth[target], depth[node_id] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return depth


def _edge(
    spec: NodeSpec, source: PlacedNode, target: PlacedNode, label: str, target_spec: NodeSpec
) -> PlacedEdge:
    x1, y1 = source.x + source.width, source.y + source.height // 2
    x2, y2 = target.x, target.y + target.height // 2
    bend = max((x2 - x1) // 2, 16)
    path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    taken = (
        spec.status == "succeeded"
        and target_spec.status in REACHED
        and (label == "" or spec.branch == label)
    )
    # The curve's midpoint, the label just above it (then and else leave from one point).
    middle_x, middle_y = (x1 + x2) // 2, (y1 + y2) // 2
    return PlacedEdge(spec.node_id, target.node_id, label, taken, path, middle_x - 12, middle_y - 6)


def _label(node_id: str) -> str:
    return node_id if len(node_id) <= LABEL_CHARS else node_id[: LABEL_CHARS - 1] + "…"
