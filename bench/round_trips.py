"""Count the database round trips one node costs, on the real PostgreSQL.

    DATABASE_URL=postgresql+psycopg://... python -m bench.round_trips

Runs a 3-node workflow (transform -> transform -> transform) through the same functions the
worker calls (lease, driver, complete) and counts what the engine sends: every statement, every
BEGIN and COMMIT, and the pool's pre-ping, each of which is one round trip with psycopg 3.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from sqlalchemy import event

from app.config import Settings
from app.models import make_engine, make_session_factory
from app.models.migrate import upgrade
from app.safe_http import make_http_client
from app.workflows import save_workflow, start_run
from app.workflows.invoke import execute_node

CHAIN = {
    "workflow_id": "bench-round-trips",
    "nodes": [
        {"id": "a", "type": "transform", "params": {"values": {"n": 1}}, "next": "b"},
        {"id": "b", "type": "transform", "params": {"values": {"n": 2}}, "next": "c"},
        {"id": "c", "type": "transform", "params": {"values": {"n": 3}}},
    ],
}


def count_round_trips(database_url: str) -> dict[str, Any]:
    settings = Settings(DATABASE_URL=database_url)
    upgrade(database_url)
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    counts: Counter[str] = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts[statement.split()[0].upper()] += 1

    event.listen(engine, "begin", lambda _conn: counts.update(["BEGIN"]))
    event.listen(engine, "commit", lambda _conn: counts.update(["COMMIT"]))
    # pool_pre_ping sends one ping on every checkout, bypassing the cursor events.
    event.listen(engine.pool, "checkout", lambda *_args: counts.update(["PING"]))

    with sessions.begin() as session:
        save_workflow(session, CHAIN)
    with sessions.begin() as session:
        started = start_run(session, CHAIN["workflow_id"], {})
    # Warm the definition cache, as a long-running worker has it.
    queue = list(started.to_publish)
    with make_http_client(settings) as http:
        successors = execute_node(sessions, settings, http, queue.pop(0))
        queue.extend(successors)
        counts.clear()
        nodes = 0
        while queue:
            successors = execute_node(sessions, settings, http, queue.pop(0))
            queue.extend(successors)
            nodes += 1
    engine.dispose()
    total = sum(counts.values())
    return {"nodes": nodes, "per_node": total / nodes, "by_kind": dict(counts)}


if __name__ == "__main__":
    result = count_round_trips(os.environ["DATABASE_URL"])
    print(f"{result['per_node']:.1f} round trips per node over {result['nodes']} nodes")
    print(result["by_kind"])
