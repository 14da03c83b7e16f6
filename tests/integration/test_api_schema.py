"""Schemathesis against the running app: gunicorn, PostgreSQL and Redis, every check on.

The OpenAPI document must be exactly as strict as the server (docs/api.md#the-api-document):
data it calls valid is accepted, data it calls invalid is refused, every answer has a
documented status, content type, headers and body, and a method a path does not take is a 405
naming those it does. One test per operation, each running schemathesis's examples, coverage
and fuzzing phases: 20 generated examples, a deadline per example and per request.

The document is the one the app serves, built from the code at import (pytest parametrizes at
collection, before any server is up); a test checks that gunicorn serves the same one. The app
runs on a database and a Redis database of its own: schemathesis creates agents and workflows
and sends unsigned webhooks, which must not reach the session's worker or limit other tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from app.web.openapi import build_document
from tests.integration.conftest import (
    ADMIN_KEY,
    Stack,
    empty_redis_database,
    gunicorn,
    own_database,
)
from tests.web.conftest import ENCRYPTION_KEY

pytestmark = pytest.mark.integration

#: Operations whose server checks what no JSON Schema can say, answered 422 with each problem
#: (documented there): a definition's graph and its drivers' params, a tool's input_schema, the
#: workflows an agent's tools name, a retry's cross-field rule, a page cursor that the server
#: did not issue. For them a schema-valid request may be a 422; everywhere else it may not.
CHECKED_BEYOND_THE_SCHEMA = [
    "createWorkflow",
    "replaceWorkflow",
    "executeWorkflow",
    "fireWebhook",
    "fireWebhookSeed",
    "createAgent",
    "createAgentSeed",
    "updateAgent",
    "retryRun",
    "listRuns",
    "listWorkflowDeliveries",
]
#: A delivery's signature is checked with its workflow's secrets: for a workflow that does not
#: exist the answer is a 404 before any signature is looked at.
SIGNED_PER_WORKFLOW = ["fireWebhook", "fireWebhookSeed"]

CONFIG = f"""
[generation]
max-examples = 20
# Text PostgreSQL cannot store (a NUL; a lone surrogate, which utf-8 cannot encode) is a 422
# `invalid_text` (docs/api.md#errors): no JSON Schema keyword can say so.
allow-x00 = false
codec = "utf-8"

[headers]
Authorization = "Bearer {ADMIN_KEY}"

[[operations]]
include-operation-id = {CHECKED_BEYOND_THE_SCHEMA!r}
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"
]

[[operations]]
include-operation-id = {SIGNED_PER_WORKFLOW!r}
checks.missing_required_header.expected-statuses = ["400", "401", "403", "404", "415", "422"]
"""

DOCUMENT = build_document(version("dualmcp"))
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_str(CONFIG))


@pytest.fixture(scope="module")
def app_url(stack: Stack, postgres_url: str, redis_url: str) -> Iterator[str]:
    env = {
        "DUALMCP_ENCRYPTION_KEY": ENCRYPTION_KEY,  # credentials can be stored (else a 503)
        "DUALMCP_AGENT_REPLY_WAIT_S": "0.2",  # no worker serves this Redis: a 202 soon
        # Unsigned deliveries by the hundred: the webhook logic is tested, not the 429.
        "DUALMCP_WEBHOOK_REFUSALS_PER_ADDRESS": "1000000",
        "DUALMCP_WEBHOOK_REFUSALS_PER_WORKFLOW": "1000000",
    }
    with (
        own_database(postgres_url, "schemathesis") as database_url,
        empty_redis_database(redis_url) as own_redis,
        gunicorn(stack, {**env, "DATABASE_URL": database_url, "REDIS_URL": own_redis}) as url,
    ):
        yield url


def test_gunicorn_serves_the_document_under_test(app_url: str) -> None:
    served: dict[str, Any] = httpx.get(f"{app_url}/api/openapi.json", timeout=10).json()

    assert served == DOCUMENT


@schema.parametrize()
@settings(
    deadline=timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_app_answers_as_its_document_says(case: Case, app_url: str) -> None:
    case.call_and_validate(base_url=app_url, timeout=10)
