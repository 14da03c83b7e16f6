from __future__ import annotations

import graphlib
from collections import Counter
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from app.engine.routing import (
    Decision,
    NodeState,
    advance,
    predecessors,
    retry_delay_s,
    routed_targets,
    run_outcome,
    should_retry,
)
from app.engine.schema import (
    TERMINAL_NODE_STATUSES,
    NodeDefinition,
    RetryPolicy,
    WorkflowDefinition,
)
from app.engine.validation import validate_definition
from tests.engine.param_schemas import PARAM_SCHEMAS

OK = NodeState("succeeded")
SKIPPED = NodeState("skipped")
FAILED = NodeState("failed")
RUNNING = NodeState("running")


def _node(node_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "http_request", **fields}


def _cond(node_id: str, **fields: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "conditional", "params": {"condition": "x"}, **fields}


def _workflow(*nodes: dict[str, Any], **fields: Any) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"workflow_id": "wf", "nodes": list(nodes), **fields})


def _branch(name: str) -> NodeState:
    return NodeState("succeeded", {"result": name == "then", "branch": name})


# fetch -> check -(then)-> sms -> notify
#                -(else)-----------^
SALES = _workflow(
    _node("fetch", next="check"),
    _cond("check", then="sms", **{"else": "notify"}),
    _node("sms", next="notify"),
    _node("notify"),
)
# a -> (b, c) -> d
DIAMOND = _workflow(
    _node("a", next=["b", "c"]), _node("b", next="d"), _node("c", next="d"), _node("d")
)


def test_predecessors_lists_every_node_with_its_sources() -> None:
    assert predecessors(SALES) == {
        "fetch": [],
        "check": ["fetch"],
        "sms": ["check"],
        "notify": ["check", "sms"],
    }


def test_predecessors_returns_a_fresh_copy() -> None:
    predecessors(DIAMOND)["d"].append("x")
    assert predecessors(DIAMOND)["d"] == ["b", "c"]


def test_routed_targets_of_a_succeeded_node_is_its_next() -> None:
    assert routed_targets(DIAMOND.node("a"), OK) == ["b", "c"]


@pytest.mark.parametrize(("branch", "target"), [("then", ["sms"]), ("else", ["notify"])])
def test_routed_targets_of_a_conditional_follows_its_branch(branch: str, target: list[str]) -> None:
    assert routed_targets(SALES.node("check"), _branch(branch)) == target


def test_conditional_without_a_target_for_its_branch_routes_nowhere() -> None:
    node = NodeDefinition.model_validate(_cond("c", then="x"))
    assert routed_targets(node, _branch("else")) == []


def test_conditional_without_a_branch_in_its_output_routes_nowhere() -> None:
    assert routed_targets(SALES.node("check"), NodeState("succeeded", {})) == []


def test_failed_node_with_continue_routes_to_its_next() -> None:
    node = NodeDefinition.model_validate(_node("a", next="b", on_error="continue"))
    assert routed_targets(node, FAILED) == ["b"]


@pytest.mark.parametrize("status", ["failed", "skipped", "cancelled", "running"])
def test_node_that_did_not_succeed_routes_nowhere(status: str) -> None:
    assert routed_targets(DIAMOND.node("a"), NodeState(status)) == []


def test_entry_runs_first() -> None:
    assert advance(SALES, {}) == Decision(to_run=["fetch"], to_skip=[])


def test_start_names_the_entry() -> None:
    defn = _workflow(_node("a"), _node("b", next="a"), start="b")
    assert advance(defn, {}) == Decision(to_run=["b"], to_skip=[])


def test_fan_out_runs_every_successor() -> None:
    assert advance(DIAMOND, {"a": OK}) == Decision(to_run=["b", "c"], to_skip=[])


def test_nodes_with_a_state_are_not_decided_again() -> None:
    assert advance(DIAMOND, {"a": OK, "b": RUNNING, "c": NodeState("pending")}) == Decision([], [])


def test_join_waits_for_every_predecessor() -> None:
    assert advance(DIAMOND, {"a": OK, "b": OK, "c": RUNNING}) == Decision([], [])


def test_join_runs_once_every_predecessor_finished() -> None:
    assert advance(DIAMOND, {"a": OK, "b": OK, "c": OK}) == Decision(to_run=["d"], to_skip=[])


def test_join_runs_when_one_predecessor_routed_and_the_other_was_skipped() -> None:
    states = {"fetch": OK, "check": _branch("else"), "sms": SKIPPED}
    assert advance(SALES, states) == Decision(to_run=["notify"], to_skip=[])


def test_untaken_branch_is_skipped_and_the_join_runs_in_the_same_call() -> None:
    states = {"fetch": OK, "check": _branch("else")}
    assert advance(SALES, states) == Decision(to_run=["notify"], to_skip=["sms"])


def test_dead_path_is_skipped_transitively() -> None:
    defn = _workflow(
        _cond("c", then="a", **{"else": "x"}),
        _node("x", next="y"),
        _node("y", next="z"),
        _node("z"),
        _node("a"),
    )
    assert advance(defn, {"c": _branch("then")}) == Decision(to_run=["a"], to_skip=["x", "y", "z"])


def test_dead_path_is_skipped_transitively_whatever_the_definition_order() -> None:
    defn = _workflow(
        _node("z"),
        _node("y", next="z"),
        _node("x", next="y"),
        _node("a"),
        _cond("c", then="a", **{"else": "x"}),
        start="c",
    )
    assert advance(defn, {"c": _branch("then")}) == Decision(to_run=["a"], to_skip=["z", "y", "x"])


def test_join_is_skipped_when_no_predecessor_routed_to_it() -> None:
    defn = _workflow(
        _cond("c", then="a", **{"else": "b"}),
        _node("a", next="j"),
        _cond("b", then="j", **{"else": "k"}),
        _node("j"),
        _node("k"),
    )
    states = {"c": _branch("else"), "a": SKIPPED, "b": _branch("else")}
    assert advance(defn, states) == Decision(to_run=["k"], to_skip=["j"])


def test_failed_node_with_continue_lets_the_run_go_on() -> None:
    defn = _workflow(_node("a", next="b", on_error="continue"), _node("b"))
    assert advance(defn, {"a": FAILED}) == Decision(to_run=["b"], to_skip=[])


def test_decisions_come_in_definition_order() -> None:
    defn = _workflow(_node("a", next=["d", "b", "c"]), _node("b"), _node("c"), _node("d"))
    assert advance(defn, {"a": OK}).to_run == ["b", "c", "d"]


def test_advance_decides_nothing_once_the_run_failed() -> None:
    assert advance(DIAMOND, {"a": OK, "b": FAILED, "c": OK}) == Decision([], [])


def test_failed_node_fails_the_run() -> None:
    assert run_outcome(DIAMOND, {"a": OK, "b": FAILED, "c": RUNNING}) == "failed"


def test_cancelled_node_fails_the_run() -> None:
    assert run_outcome(DIAMOND, {"a": NodeState("cancelled")}) == "failed"


def test_run_has_no_outcome_while_a_node_is_unfinished() -> None:
    assert run_outcome(DIAMOND, {"a": OK, "b": OK, "c": NodeState("retrying")}) is None


def test_run_has_no_outcome_while_a_node_has_no_state() -> None:
    assert run_outcome(DIAMOND, {"a": OK, "b": OK, "c": OK}) is None


def test_run_succeeds_when_every_node_finished() -> None:
    defn = _workflow(
        _node("a", next=["b", "c"], on_error="continue"), _node("b", next="c"), _node("c")
    )
    assert run_outcome(defn, {"a": FAILED, "b": SKIPPED, "c": OK}) == "succeeded"


def test_retry_delay_grows_exponentially() -> None:
    policy = RetryPolicy(backoff_s=2, backoff_max_s=300, jitter=False)
    assert [retry_delay_s(policy, attempt, 0.0) for attempt in (1, 2, 3, 4)] == [2, 4, 8, 16]


def test_retry_delay_is_capped() -> None:
    policy = RetryPolicy(backoff_s=2, backoff_max_s=10, jitter=False)
    assert retry_delay_s(policy, 5, 0.0) == 10


def test_retry_delay_of_a_huge_attempt_does_not_overflow() -> None:
    policy = RetryPolicy(backoff_s=2, backoff_max_s=10, jitter=False)
    assert retry_delay_s(policy, 10_000, 0.0) == 10


@pytest.mark.parametrize(("rand", "expected"), [(0.0, 4.0), (0.5, 6.0), (0.999, 7.996)])
def test_jitter_scales_the_delay_between_half_and_all(rand: float, expected: float) -> None:
    policy = RetryPolicy(backoff_s=2, backoff_max_s=300, jitter=True)
    assert retry_delay_s(policy, 3, rand) == pytest.approx(expected)


@pytest.mark.parametrize(("attempt", "expected"), [(1, True), (2, True), (3, False), (4, False)])
def test_should_retry_until_max_attempts(attempt: int, expected: bool) -> None:
    assert should_retry(RetryPolicy(max_attempts=3), attempt) is expected


# --- properties over random graphs --------------------------------------------------------


@st.composite
def random_workflows(draw: st.DrawFn) -> dict[str, Any]:
    """Random graphs: mostly forward edges (DAGs), sometimes any edge (often cycles)."""
    size = draw(st.integers(1, 8))
    ids = [f"n{i}" for i in range(size)]
    forward_only = draw(st.booleans())
    nodes: list[dict[str, Any]] = []
    for index, node_id in enumerate(ids):
        targets = ids[index + 1 :] if forward_only else ids
        on_error = draw(st.sampled_from(["fail", "continue"]))
        if len(targets) > 0 and draw(st.booleans()):
            node = _cond(node_id, then=draw(st.sampled_from(targets)), on_error=on_error)
            node["else"] = draw(st.none() | st.sampled_from(targets))
        else:
            next_ids = (
                draw(st.lists(st.sampled_from(targets), unique=True, max_size=3)) if targets else []
            )
            node = _node(
                node_id, params={"url": "https://a.example/"}, next=next_ids, on_error=on_error
            )
        nodes.append(node)
    # Give most nodes an earlier parent, so many graphs are fully reachable.
    for index in range(1, size):
        if any(ids[index] in _targets(node) for node in nodes[:index]):
            continue
        parent = nodes[draw(st.integers(0, index - 1))]
        if parent["type"] != "conditional":
            parent["next"].append(ids[index])
        elif parent["else"] is None:
            parent["else"] = ids[index]
    # Definition order need not follow the graph: `start` keeps n0 the entry.
    return {"workflow_id": "wf", "start": "n0", "nodes": draw(st.permutations(nodes))}


def _targets(node: dict[str, Any]) -> list[str]:
    found = [*node.get("next", []), node.get("then"), node.get("else")]
    return [target for target in found if target is not None]


def _has_cycle(raw: dict[str, Any]) -> bool:
    sorter = graphlib.TopologicalSorter({node["id"]: _targets(node) for node in raw["nodes"]})
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return True
    return False


@given(random_workflows())
@settings(max_examples=200, deadline=None)
def test_a_cycle_is_reported_exactly_when_the_graph_has_one(raw: dict[str, Any]) -> None:
    _, problems = validate_definition(raw, PARAM_SCHEMAS)
    event("cyclic" if _has_cycle(raw) else "acyclic")
    assert any(problem.code == "cycle" for problem in problems) == _has_cycle(raw)


@given(random_workflows(), st.data())
@settings(max_examples=200, deadline=None)
def test_every_accepted_graph_runs_to_success(raw: dict[str, Any], data: st.DataObject) -> None:
    defn, problems = validate_definition(raw, PARAM_SCHEMAS)
    event("accepted" if defn is not None and not problems else "rejected")
    if problems or defn is None:
        return
    states: dict[str, NodeState] = {}
    runs: Counter[str] = Counter()
    pending: list[str] = []
    for _ in range(2 * len(defn.nodes) + 2):
        decision = advance(defn, states)
        for node_id in [*decision.to_run, *decision.to_skip]:
            assert node_id not in states, f"{node_id} decided twice"
        states.update({node_id: SKIPPED for node_id in decision.to_skip})
        states.update({node_id: NodeState("pending") for node_id in decision.to_run})
        runs.update(decision.to_run)
        pending.extend(decision.to_run)
        if not pending:
            break
        # Finish one running node, in any order, the way concurrent workers would.
        node = defn.node(pending.pop(data.draw(st.integers(0, len(pending) - 1))))
        if node.on_error == "continue" and data.draw(st.booleans()):
            states[node.id] = FAILED
        elif node.type == "conditional":
            states[node.id] = _branch(data.draw(st.sampled_from(["then", "else"])))
        else:
            states[node.id] = OK
    assert run_outcome(defn, states) == "succeeded"
    assert all(states[node.id].status in TERMINAL_NODE_STATUSES for node in defn.nodes)
    assert max(runs.values()) == 1
    assert advance(defn, states) == Decision([], [])
