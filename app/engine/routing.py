"""The run's state machine as pure decisions (DESIGN.md: Execution, and the join rule).

The tasks hold the truth in PostgreSQL; they load the node states of a run, ask `advance` what to
insert next, and write that in the same transaction. Nothing here does I/O or keeps run state.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from app.engine.schema import CONDITIONAL_NODE_TYPE, NodeDefinition, RetryPolicy, WorkflowDefinition

__all__ = [
    "Decision",
    "NodeState",
    "advance",
    "is_finished",
    "predecessors",
    "retry_delay_s",
    "routed_targets",
    "run_outcome",
    "should_retry",
]

#: Exponents past this only overflow floats; the delay is capped by backoff_max_s long before.
_MAX_BACKOFF_EXPONENT = 64


@dataclass(frozen=True)
class NodeState:
    """What a run knows of one node: its node_run status and, once it succeeded, its output."""

    status: str
    output: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Decision:
    """Nodes to insert as pending (and publish), and nodes to insert as skipped (dead paths)."""

    to_run: list[str]
    to_skip: list[str]


@dataclass(frozen=True)
class _Topology:
    by_id: Mapping[str, NodeDefinition]
    predecessors: Mapping[str, tuple[str, ...]]


# Keyed by id() because pydantic models are unhashable; the finalizer drops an entry with its
# definition. Definitions are immutable once stored, so a cached topology never goes stale.
_TOPOLOGIES: dict[int, _Topology] = {}


def _topology(defn: WorkflowDefinition) -> _Topology:
    key = id(defn)
    topology = _TOPOLOGIES.get(key)
    if topology is None:
        incoming: dict[str, list[str]] = {node.id: [] for node in defn.nodes}
        for node in defn.nodes:
            for target in node.successor_ids:
                incoming.setdefault(target, []).append(node.id)
        topology = _Topology(
            by_id={node.id: node for node in defn.nodes},
            predecessors={node_id: tuple(sources) for node_id, sources in incoming.items()},
        )
        _TOPOLOGIES[key] = topology
        weakref.finalize(defn, _TOPOLOGIES.pop, key, None)
    return topology


def predecessors(defn: WorkflowDefinition) -> dict[str, list[str]]:
    """Every node id mapped to the ids of the nodes that may route to it, in definition order."""
    return {node_id: list(sources) for node_id, sources in _topology(defn).predecessors.items()}


def is_finished(node: NodeDefinition, state: NodeState) -> bool:
    """Done without failing the run: succeeded, skipped, or failed with `on_error: continue`."""
    return state.status in ("succeeded", "skipped") or (
        state.status == "failed" and node.on_error == "continue"
    )


def routed_targets(node: NodeDefinition, state: NodeState) -> list[str]:
    """The successors this node sends the run on to, given how it ended."""
    if state.status == "succeeded" and node.type == CONDITIONAL_NODE_TYPE:
        output = state.output or {}
        branch = output.get("branch")
        if branch not in ("then", "else") and isinstance(output.get("result"), bool):
            branch = "then" if output["result"] else "else"
        target = node.then if branch == "then" else node.else_ if branch == "else" else None
        return [target] if target is not None else []
    if state.status == "succeeded":
        return node.next_ids
    if state.status == "failed" and node.on_error == "continue":
        return node.next_ids
    return []


def advance(defn: WorkflowDefinition, states: Mapping[str, NodeState]) -> Decision:
    """Which nodes without a state can now be decided: run them, or skip them as a dead path.

    A node is decided once all its predecessors are finished; it runs if at least one routed to
    it. Skips are propagated to a fixed point, so a whole dead branch is skipped in one call.
    """
    if run_outcome(defn, states) == "failed":
        return Decision(to_run=[], to_skip=[])
    topology = _topology(defn)
    known = dict(states)
    decided: dict[str, bool] = {}  # node id -> runs
    if defn.entry_id not in known:
        decided[defn.entry_id] = True
        known[defn.entry_id] = NodeState("pending")
    changed = True
    while changed:
        changed = False
        for node in defn.nodes:
            if node.id in known:
                continue
            sources = topology.predecessors[node.id]
            if not all(
                source in known and is_finished(topology.by_id[source], known[source])
                for source in sources
            ):
                continue
            runs = any(
                node.id in routed_targets(topology.by_id[source], known[source])
                for source in sources
            )
            decided[node.id] = runs
            # A running node decides nothing downstream; a skipped one may settle its successors.
            known[node.id] = NodeState("pending" if runs else "skipped")
            changed = changed or not runs
    return Decision(
        to_run=[node.id for node in defn.nodes if decided.get(node.id) is True],
        to_skip=[node.id for node in defn.nodes if decided.get(node.id) is False],
    )


def run_outcome(
    defn: WorkflowDefinition, states: Mapping[str, NodeState]
) -> Literal["succeeded", "failed"] | None:
    """`failed` once a node fails (on_error fail) or is cancelled; `succeeded` once all are done."""
    for node in defn.nodes:
        state = states.get(node.id)
        if state is None:
            continue
        if state.status == "cancelled" or (state.status == "failed" and node.on_error == "fail"):
            return "failed"
    if all(node.id in states and is_finished(node, states[node.id]) for node in defn.nodes):
        return "succeeded"
    return None


def retry_delay_s(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """Seconds before the next attempt after attempt number `attempt` (1-based) failed.

    Exponential and capped; with jitter scaled into [50%, 100%) so retries spread out. `rand`
    in [0, 1) is passed in to keep this pure.
    """
    exponent = min(max(attempt, 1) - 1, _MAX_BACKOFF_EXPONENT)
    delay = min(policy.backoff_s * 2.0**exponent, policy.backoff_max_s)
    if policy.jitter:
        delay *= 0.5 + rand / 2
    return delay


def should_retry(policy: RetryPolicy, attempt: int) -> bool:
    """True when attempt number `attempt` (1-based) just failed and the policy allows another."""
    return attempt < policy.max_attempts
