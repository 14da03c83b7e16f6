"""Count the database round trips one node costs, on the real PostgreSQL.

    DATABASE_URL=postgresql+psycopg://... python -m bench.round_trips

Runs a 3-node workflow (transform -> transform -> transform) through the worker's own task body
(`run_node`, with the worker's runtime: its engines, its claims connection), publishing into a
list instead of the broker, and counts what its engines send: every statement, every BEGIN and
COMMIT, and pool pings, each of which is one round trip with psycopg 3. The first run warms the
caches, as a long-running worker has them; the second is counted, node by node as recorded.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from typing import Any, cast
from unittest import mock

from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.models import NodeRun, make_engine, make_session_factory
from app.models.migrate import upgrade
from app.workflows import save_workflow, start_run
from app.workflows.runs import NodeRef

CHAIN: dict[str, Any] = {
    "workflow_id": "bench-round-trips",
    "nodes": [
        {"id": "a", "type": "transform", "params": {"values": {"n": 1}}, "next": "b"},
        {"id": "b", "type": "transform", "params": {"values": {"n": 2}}, "next": "c"},
        {"id": "c", "type": "transform", "params": {"values": {"n": 3}}},
    ],
}


def count_round_trips(database_url: str) -> dict[str, Any]:
    os.environ["DATABASE_URL"] = database_url
    get_settings.cache_clear()
    upgrade(database_url)
    from app.tasks import nodes as node_tasks
    from app.tasks.runtime import get_runtime, set_runtime

    set_runtime(None)
    runtime = get_runtime()
    engines = _engines_of(runtime)
    counts: Counter[str] = Counter()
    for engine in engines:
        _count_into(engine, counts)
    # Runs are started on an engine of their own: only the nodes' round trips are counted.
    setup_engine = make_engine(database_url)
    setup = make_session_factory(setup_engine)
    published: list[NodeRef] = []
    # The task publishes into `published`, not the broker (where the bench's worker waits).
    divert = mock.patch.object(node_tasks, "publish", published.extend)
    try:
        divert.start()
        with setup.begin() as session:
            save_workflow(session, CHAIN)
        _run_once(setup, node_tasks.run_node, published)
        counts.clear()
        run_id = _run_once(setup, node_tasks.run_node, published)
        with setup() as session:
            nodes = session.scalar(
                select(func.count())
                .select_from(NodeRun)
                .where(NodeRun.run_id == run_id, NodeRun.status == "succeeded")
            )
    finally:
        divert.stop()
        set_runtime(None)
        runtime.http.close()
        for engine in [*engines, setup_engine]:
            engine.dispose()
    nodes = int(nodes or 0)
    total = sum(counts.values())
    return {"nodes": nodes, "per_node": total / max(nodes, 1), "by_kind": dict(counts)}


def _run_once(setup: sessionmaker[Session], run_node: Any, published: list[NodeRef]) -> Any:
    with setup.begin() as session:
        started = start_run(session, CHAIN["workflow_id"], {})
    queue = list(started.to_publish)
    while queue:
        ref = queue.pop(0)
        run_node.run(ref.run_id, ref.node_id)
        queue.extend(published)
        published.clear()
    return uuid.UUID(started.run_id)


def _engines_of(runtime: Any) -> list[Engine]:
    """The distinct engines behind the runtime's session factories (main and claims)."""
    engines: list[Engine] = []
    for name in ("sessions", "claims"):
        factory = getattr(runtime, name, None)
        bind = factory.kw.get("bind") if factory is not None else None
        if bind is not None and all(bind is not engine for engine in engines):
            engines.append(cast(Engine, bind))
    return engines


def _count_into(engine: Engine, counts: Counter[str]) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        counts[statement.split()[0].upper()] += 1

    # On an autocommit connection (the claims engine) BEGIN and COMMIT are never sent.
    def _sent(conn: Any) -> bool:
        return not getattr(conn.connection.dbapi_connection, "autocommit", False)

    event.listen(engine, "begin", lambda conn: _sent(conn) and counts.update(["BEGIN"]))
    event.listen(engine, "commit", lambda conn: _sent(conn) and counts.update(["COMMIT"]))
    # A pre-ping (when the pool does one) is a round trip the cursor events do not see.
    if getattr(engine.pool, "_pre_ping", False):
        event.listen(engine.pool, "checkout", lambda *_args: counts.update(["PING"]))


if __name__ == "__main__":
    result = count_round_trips(os.environ["DATABASE_URL"])
    print(f"{result['per_node']:.1f} round trips per node over {result['nodes']} nodes")
    print(result["by_kind"])
