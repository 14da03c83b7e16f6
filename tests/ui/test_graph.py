"""The graph layout: columns by depth, every edge pointing right, the path taken marked."""

from __future__ import annotations

from app.web.ui.graph import COLUMN_PITCH, NodeSpec, layout


def _lead(check_branch: str | None, sms: str, email: str) -> list[NodeSpec]:
    return [
        NodeSpec("fetch", "data_fetch", "succeeded", [("check", "")]),
        NodeSpec(
            "check", "conditional", "succeeded", [("sms", "then"), ("email", "else")], check_branch
        ),
        NodeSpec("sms", "twilio_sms", sms, [("notify", "")]),
        NodeSpec("email", "email_send", email, [("notify", "")]),
        NodeSpec("notify", "transform", "not_started"),
    ]


def test_a_node_sits_one_column_right_of_its_furthest_predecessor() -> None:
    graph = layout(_lead("then", "succeeded", "skipped"))
    column = {node.node_id: node.x // COLUMN_PITCH for node in graph.nodes}
    assert column == {"fetch": 0, "check": 1, "sms": 2, "email": 2, "notify": 3}
    assert len({node.y for node in graph.nodes if column[node.node_id] == 2}) == 2
    assert all(node.x + node.width <= graph.width for node in graph.nodes)
    assert all(node.y + node.height <= graph.height for node in graph.nodes)


def test_the_path_taken_follows_the_conditional_branch_into_reached_nodes() -> None:
    graph = layout(_lead("then", "running", "skipped"))
    taken = {(edge.source, edge.target) for edge in graph.edges if edge.taken}
    assert taken == {("fetch", "check"), ("check", "sms")}
    labels = {(edge.source, edge.target): edge.label for edge in graph.edges}
    assert labels[("check", "sms")] == "then" and labels[("check", "email")] == "else"


def test_a_long_node_id_is_shortened_in_its_box_only() -> None:
    graph = layout([NodeSpec("a_very_long_node_identifier_indeed", "transform", "pending")])
    assert graph.nodes[0].node_id == "a_very_long_node_identifier_indeed"
    assert graph.nodes[0].label.endswith("…") and len(graph.nodes[0].label) == 18
