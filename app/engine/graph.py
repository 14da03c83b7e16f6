"""Plain graph algorithms over node ids: cycles and reachability, iterative so depth is no limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence


def find_cycles(order: Sequence[str], edges: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one, as `[a, b, c, a]`.

    Each cycle starts at its component's earliest node in `order`, and the cycles come in that
    order too, so the same definition always reports the same cycles.
    """
    position = {node: index for index, node in enumerate(order)}
    cycles = []
    for component in _strongly_connected(order, edges):
        start = min(component, key=position.__getitem__)
        members = set(component)
        if len(component) > 1 or start in edges.get(start, ()):
            cycles.append(_shortest_cycle(start, members, edges))
    cycles.sort(key=lambda cycle: position[cycle[0]])
    return cycles


def reachable(entry: str, edges: Mapping[str, Sequence[str]]) -> set[str]:
    """Every node a run starting at `entry` could visit, `entry` included."""
    seen = {entry}
    queue = deque([entry])
    while queue:
        for target in edges.get(queue.popleft(), ()):
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def _strongly_connected(
    order: Sequence[str], edges: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    """Kosaraju's algorithm: finish order on the graph, then components on the reversed graph."""
    finished: list[str] = []
    visited: set[str] = set()
    for root in order:
        if root in visited:
            continue
        visited.add(root)
        stack = [(root, iter(edges.get(root, ())))]
        while stack:
            node, successors = stack[-1]
            for target in successors:
                if target not in visited:
                    visited.add(target)
                    stack.append((target, iter(edges.get(target, ()))))
                    break
            else:
                stack.pop()
                finished.append(node)

    reverse: dict[str, list[str]] = {node: [] for node in order}
    for node in order:
        for target in edges.get(node, ()):
            reverse.setdefault(target, []).append(node)

    components = []
    assigned: set[str] = set()
    for root in reversed(finished):
        if root in assigned:
            continue
        assigned.add(root)
        component, todo = [], [root]
        while todo:
            node = todo.pop()
            component.append(node)
            for source in reverse.get(node, ()):
                if source not in assigned:
                    assigned.add(source)
                    todo.append(source)
        components.append(component)
    return components


def _shortest_cycle(start: str, members: set[str], edges: Mapping[str, Sequence[str]]) -> list[str]:
    """Breadth-first inside one component, back to `start`: the shortest cycle through it."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in edges.get(node, ()):
            if target not in members:
                continue
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if target not in parent:
                parent[target] = node
                queue.append(target)
    raise AssertionError("a strongly connected component always holds a cycle")
