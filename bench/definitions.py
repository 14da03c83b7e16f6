"""The workflows the scenarios run."""

from __future__ import annotations

from typing import Any

#: Nodes in the chains of scenarios 1 and 2.
CHAIN_LENGTH = 8


def http_chain(workflow_id: str, url: str) -> dict[str, Any]:
    """CHAIN_LENGTH `http_request` nodes, each a GET to the echo server: each its own task."""
    return _chain(workflow_id, "http_request", lambda _index: {"url": url})


def transform_chain(workflow_id: str) -> dict[str, Any]:
    """CHAIN_LENGTH `transform` nodes, each reading the one before: control nodes, run inline."""

    def params(index: int) -> dict[str, Any]:
        source = "{{ trigger.i }}" if index == 0 else f"{{{{ nodes.t{index - 1}.n }}}}"
        return {"values": {"n": source, "step": index}}

    return _chain(workflow_id, "transform", params)


def _chain(workflow_id: str, node_type: str, params: Any) -> dict[str, Any]:
    nodes = []
    prefix = "h" if node_type == "http_request" else "t"
    for index in range(CHAIN_LENGTH):
        node: dict[str, Any] = {"id": f"{prefix}{index}", "type": node_type}
        node["params"] = params(index)
        if index + 1 < CHAIN_LENGTH:
            node["next"] = f"{prefix}{index + 1}"
        nodes.append(node)
    return {"workflow_id": workflow_id, "name": f"bench: {node_type} x8", "nodes": nodes}


def webhook_flow(workflow_id: str, secret: str) -> dict[str, Any]:
    """n8n's Webhook -> Set -> IF -> Set, as transform -> conditional -> transform | transform,
    fired by a signed Standard Webhooks trigger."""
    return {
        "workflow_id": workflow_id,
        "name": "bench: set, if, set",
        "trigger": {"type": "webhook", "scheme": "standard", "secrets": [secret]},
        "nodes": [
            {
                "id": "set",
                "type": "transform",
                "params": {
                    "values": {
                        "amount": "{{ trigger.amount }}",
                        "customer": "{{ trigger.customer }}",
                    }
                },
                "next": "check",
            },
            {
                "id": "check",
                "type": "conditional",
                "params": {"condition": "trigger.amount >= 100"},
                "then": "big",
                "else": "small",
            },
            {
                "id": "big",
                "type": "transform",
                "params": {"values": {"tier": "big", "customer": "{{ nodes.set.customer }}"}},
            },
            {
                "id": "small",
                "type": "transform",
                "params": {"values": {"tier": "small", "customer": "{{ nodes.set.customer }}"}},
            },
        ],
    }
