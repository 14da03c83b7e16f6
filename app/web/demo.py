"""The sales-lead sample's outside world, served only by `dualmcp standalone --demo`: a tiny
CRM (it wants a Bearer token: the workflow's `crm-token` credential) and the sales team's
webhook receiver."""

from __future__ import annotations

import hashlib

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

bp = Blueprint("demo", __name__)

NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra"]
INTERESTS = ["workflow automation", "LLM agents", "webhook integrations", "SMS campaigns"]


@bp.get("/api/demo/crm/leads/<lead_id>")
def lead(lead_id: str) -> ResponseReturnValue:
    """A deterministic lead for any id: lead 42 is hot (score 91), lead 7 cold, others vary."""
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        return jsonify({"error": "a Bearer token is required"}), 401
    digest = int(hashlib.sha256(lead_id.encode()).hexdigest(), 16)
    score = {"42": 91, "7": 35}.get(lead_id, digest % 100)
    name = NAMES[digest % len(NAMES)]
    return jsonify(
        {
            "id": lead_id,
            "name": name,
            "email": name.lower().replace(" ", ".") + "@example.com",
            "phone": f"+1415555{digest % 10_000:04d}",
            "company": "Example Corp",
            "interest": INTERESTS[digest % len(INTERESTS)],
            "score": score,
        }
    )


@bp.post("/api/demo/sales-team")
def sales_team() -> ResponseReturnValue:
    """Where the sample notifies the sales team; a real one would check the signature."""
    return jsonify({"received": True, "webhook_id": request.headers.get("webhook-id")})
