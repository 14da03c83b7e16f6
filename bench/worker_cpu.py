"""The worker's CPU per run of the saturation chain, apart from the rest of the stack.

    eval "$(.ci/services.sh env)"   # a PostgreSQL and a Redis (make services, or your own)
    python -m bench.worker_cpu --runs 3000 [--pool prefork|solo]

The full benchmark runs the drain beside gunicorn, the status poller and beat, on a shared box
whose speed drifts by a third within minutes; comparing two versions of the code there needs
many runs. This isolates the part the execution rules decide: it makes `--runs` runs of the
saturation workflow (transform -> conditional -> transform | transform) through the API in one
process, then lets a `celery worker` drain them with nothing else running, and reads the worker's
CPU from /proc between the 10th and the 90th percentile of finishes. Run it from each worktree
in turn (alternating) to compare versions: it uses the code of the working directory. It
creates a scratch database on DATABASE_URL's server and EMPTIES the Redis database of REDIS_URL.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import redis
from sqlalchemy.engine import make_url

from bench.definitions import webhook_flow

#: Any valid Fernet key: the workers refuse to start without one; nothing is encrypted here.
ENCRYPTION_KEY = "2bVQk1fO3bq8vJ6i4P3o5e7cY1b0a9X8w7V6u5T4s3Q="
WORKFLOW_ID = "worker-cpu"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_cpu", description=__doc__)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--pool", choices=["prefork", "solo"], default="prefork")
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    server_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not server_url or not redis_url or not server_url.startswith("postgresql"):
        parser.error("needs DATABASE_URL (PostgreSQL) and REDIS_URL: eval $(.ci/services.sh env)")
    database_url = _scratch_database(server_url)
    os.environ.update(
        DATABASE_URL=database_url,
        DUALMCP_ENCRYPTION_KEY=ENCRYPTION_KEY,
        DUALMCP_MAX_QUEUE_DEPTH=str(10 * args.runs),  # the backlog is the point
    )
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], check=True)
    redis.Redis.from_url(redis_url).flushdb()
    _start_runs(args.runs)
    cpu_ms, rate = _drain(_libpq(database_url), args.runs, args.pool, args.concurrency)
    print(f"{args.pool} x{args.concurrency}: worker CPU {cpu_ms:.3f} ms per run, {rate:.0f} runs/s")
    return 0


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _scratch_database(server_url: str) -> str:
    """A fresh database on the same server, named for this run (left for inspection)."""
    name = f"worker_cpu_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(server_url), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _start_runs(count: int) -> None:
    """`count` runs through the API in this process (the front end's own path), published."""
    from app.apikeys import create_key
    from app.models import make_engine, make_session_factory
    from app.web import create_app

    engine = make_engine(os.environ["DATABASE_URL"])
    with make_session_factory(engine).begin() as session:
        key = create_key(session, "admin")
    engine.dispose()
    client = create_app().test_client()
    headers = {"Authorization": f"Bearer {key}"}
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    saved = client.post("/api/workflows", json=webhook_flow(WORKFLOW_ID, secret), headers=headers)
    assert saved.status_code == 201, saved.get_json()
    for index in range(count):
        payload = {"amount": index % 200, "customer": f"c{index}"}
        body = {"workflow_id": WORKFLOW_ID, "input": payload}
        started = client.post("/api/workflow/execute", json=body, headers=headers)
        assert started.status_code == 202, started.get_json()


def _drain(database: str, count: int, pool: str, concurrency: int) -> tuple[float, float]:
    """(worker CPU ms per run, runs/s) between the 10th and 90th percentile of finishes."""
    command = [
        sys.executable, "-m", "celery", "-A", "app.tasks", "worker",
        "-Q", "dualmcp.nodes,dualmcp.runs", f"--pool={pool}", "--loglevel=WARNING",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    if pool == "prefork":
        command.append(f"--concurrency={concurrency}")
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marks: list[tuple[int, float, float]] = []
    try:
        with psycopg.connect(database, autocommit=True) as connection:
            for threshold in (count // 10, count - count // 10):
                deadline = time.monotonic() + 300
                while (done := _succeeded(connection)) < threshold:
                    if worker.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the worker stopped or stalled; run it by hand to see")
                    time.sleep(0.02)
                marks.append((done, _cpu_seconds(worker.pid), time.monotonic()))
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    (done_0, cpu_0, at_0), (done_1, cpu_1, at_1) = marks
    return (cpu_1 - cpu_0) / (done_1 - done_0) * 1000, (done_1 - done_0) / (at_1 - at_0)


def _succeeded(connection: psycopg.Connection) -> int:
    row = connection.execute("SELECT count(*) FROM workflow_runs WHERE status = 'succeeded'")
    return int(row.fetchone()[0])  # type: ignore[index]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of the worker and its pool processes, from /proc."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    ticks = 0
    for each in [pid, *map(int, children.split())]:
        fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
