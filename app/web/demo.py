"""A tiny CRM for the demo workflow, served only by `dualmcp standalone --demo`."""

from __future__ import annotations

import hashlib

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

bp = Blueprint("demo", __name__)

NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Edsger Dijkstra"]


@bp.get("/api/demo/crm/leads/<lead_id>")
def lead(lead_id: str) -> ResponseReturnValue:
    """A deterministic lead for any id: lead 42 is hot (score 91), others vary."""
    digest = int(hashlib.sha256(lead_id.encode()).hexdigest(), 16)
    score = 91 if lead_id == "42" else digest % 100
    name = NAMES[digest % len(NAMES)]
    return jsonify(
        {
            "id": lead_id,
            "name": name,
            "email": name.lower().replace(" ", ".") + "@example.com",
            "company": "Example Corp",
            "score": score,
        }
    )
