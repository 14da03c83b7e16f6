"""The ingest baseline: bare Flask + gunicorn + one `send_task`, the issue's "floor".

    gunicorn bench.flask_baseline:app --workers=N

It takes the same signed requests as our trigger route and publishes one message on the raw
Celery app's broker connection (bench/celery_baseline.py) without verifying, validating or
recording anything: what accepting a request costs on this box before any of our work.
Nothing consumes INGEST_QUEUE; the ingest scenario deletes it afterwards.
"""

from __future__ import annotations

import uuid

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from bench.celery_baseline import app as celery

#: Where the baseline's messages go (never consumed).
INGEST_QUEUE = "bench.ingest"

app = Flask(__name__)


@app.post("/api/triggers/webhook/<workflow_id>")
def trigger(workflow_id: str) -> ResponseReturnValue:
    request.get_data()
    run_id = str(uuid.uuid4())
    celery.send_task("bench.accepted", args=[workflow_id, run_id], queue=INGEST_QUEUE)
    return jsonify(run_id=run_id), 202


@app.get("/healthz")
def healthz() -> ResponseReturnValue:
    return "ok"
