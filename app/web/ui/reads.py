"""What the pages read beyond the API's service functions: the run page's view of a run, a
page of runs since a time, and an agent's sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app import workflows
from app.engine.schema import TERMINAL_RUN_STATUSES
from app.models import AgentMessage
from app.web.redact import redact_secrets
from app.web.ui.graph import Graph, NodeSpec, layout

#: The time filter of the runs page: its choices and how far back each reaches.
SINCE_CHOICES: dict[str, timedelta] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
    "7d": timedelta(days=7),
}


@dataclass(frozen=True)
class RunView:
    """A run as its page shows it: every node of its definition version, reached or not."""

    run: dict[str, Any]
    nodes: list[dict[str, Any]]
    graph: Graph

    @property
    def finished(self) -> bool:
        return self.run["status"] in TERMINAL_RUN_STATUSES


def run_view(session: Session, run_id: str) -> RunView:
    """The run as the API shows it (app.workflows.get_run: every node of its version, with its
    edges), plus each node's params from that version, secrets masked."""
    run = workflows.get_run(session, run_id)
    definition = workflows.get_definition(session, run["workflow_id"], run["workflow_version"])
    params = {node.id: node.params for node in definition.nodes}
    nodes = []
    for row in run["nodes"]:
        output = row.get("output")
        branch = output.get("branch") if isinstance(output, dict) else None
        edges = [(target, "") for target in row.get("next") or []]
        edges += [(target, label) for label in ("then", "else") if (target := row.get(label))]
        nodes.append(
            {
                **row,
                "params": redact_secrets(params.get(row["node_id"])),
                "output": redact_secrets(output),
                "edges": edges,
                "branch": branch if branch in ("then", "else") else None,
            }
        )
    specs = [
        NodeSpec(node["node_id"], node["type"], node["status"], node["edges"], node["branch"])
        for node in nodes
    ]
    shown = {**run, "input": redact_secrets(run.get("input"))}
    return RunView(shown, nodes, layout(specs))


def runs_since(
    session: Session,
    *,
    workflow_id: str | None,
    status: str | None,
    since: str | None,
    cursor: str | None,
    limit: int = 25,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of runs, newest first, created within the `since` choice (SINCE_CHOICES)."""
    oldest = datetime.now(UTC) - SINCE_CHOICES[since] if since in SINCE_CHOICES else None
    return workflows.list_runs(
        session, workflow_id=workflow_id, status=status, limit=limit, cursor=cursor, since=oldest
    )


def agent_sessions(session: Session, agent_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The agent's conversations, the most recently active first, with their message counts."""
    last = func.max(AgentMessage.created_at)
    rows = session.execute(
        select(AgentMessage.session_id, func.count(), last)
        .where(AgentMessage.agent_id == agent_id)
        .group_by(AgentMessage.session_id)
        .order_by(last.desc())
        .limit(limit)
    )
    return [
        {"session_id": session_id, "messages": count, "last_at": at}
        for session_id, count, at in rows
    ]
