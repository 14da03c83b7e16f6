"""Logs: one JSON object per line with the run/node context, and no secret ever written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from app.config import Settings
from app.logs import (
    JsonFormatter,
    RedactingFilter,
    TextFormatter,
    known_secrets,
    log_context,
    redact_text,
    redact_value,
)


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(known=["s3cr3t-database-password"]))
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream, handler
    logger.removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("token=abc123 next", "token=*** next"),
        ('{"password": "hunter2", "user": "ann"}', '{"password": "***", "user": "ann"}'),
        ("api_key: sk-live-123456", "api_key: ***"),
        ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer ***"),
        ("calling with bearer abcdefgh12345678", "calling with bearer ***"),
        ("postgresql+psycopg://app:pw1234@db/app", "postgresql+psycopg://app:***@db/app"),
        ("secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "secret whsec_***"),
        ("key sk-proj-abcdefghijklmnop used", "key sk-*** used"),
        ("nothing to hide here", "nothing to hide here"),
        # The key may be the end of a longer word; the whole word is kept, the value masked.
        ("conn db.primary-password=pw1 ok", "conn db.primary-password=*** ok"),
        (
            "run 3f1c2a6e-5b8d-4c1e x_access_token: 'abc'",
            "run 3f1c2a6e-5b8d-4c1e x_access_token: '***'",
        ),
        (
            "Task dualmcp.run_node[3f1c2a6e-5b8d] succeeded",
            "Task dualmcp.run_node[3f1c2a6e-5b8d] succeeded",
        ),
    ],
)
def test_secrets_in_text_are_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    assert redact_text("failed with s3cr3t-value inside", ["s3cr3t-value"]) == (
        "failed with *** inside"
    )


def test_values_under_secret_keys_are_masked_in_structures() -> None:
    value = {"headers": {"X-Api-Key": "k", "Accept": "json"}, "smtp_password": "p", "n": 1}
    assert redact_value(value) == {
        "headers": {"X-Api-Key": "***", "Accept": "json"},
        "smtp_password": "***",
        "n": 1,
    }
    assert redact_value(SecretStr("x")) == "***"


def test_known_secrets_come_from_the_settings() -> None:
    settings = Settings(
        DATABASE_URL="postgresql+psycopg://app:db-password-1@db/app",
        DUALMCP_API_KEYS="admin:admin-key-123,read:read-key-456",
        OPENAI_API_KEY="sk-openai-key-789",
    )
    assert {"db-password-1", "admin-key-123", "read-key-456", "sk-openai-key-789"} <= set(
        known_secrets(settings)
    )


def test_a_json_line_carries_the_context_and_the_extras(captured) -> None:
    logger, stream, _ = captured
    with log_context(run_id="r-1", node_id="fetch", workflow_id="wf"):
        logger.info("node %s done", "fetch", extra={"attempt": 2})
    logger.info("outside")

    first, second = _lines(stream)
    assert first["message"] == "node fetch done"
    assert (first["run_id"], first["node_id"], first["workflow_id"]) == ("r-1", "fetch", "wf")
    assert (first["level"], first["logger"], first["attempt"]) == ("info", "tests.logs", 2)
    assert "run_id" not in second


def test_a_logged_secret_never_reaches_the_line(captured) -> None:
    logger, stream, _ = captured
    logger.warning("connect failed for %s", "s3cr3t-database-password", extra={"api_token": "t-1"})
    try:
        raise RuntimeError("password=hunter2")
    except RuntimeError:
        logger.exception("boom")

    text = stream.getvalue()
    assert "s3cr3t-database-password" not in text and "hunter2" not in text
    assert "t-1" not in text
    warning, error = _lines(stream)
    assert warning["api_token"] == "***"
    assert "password=***" in error["exception"]


def test_the_text_format_appends_the_context(captured) -> None:
    logger, stream, handler = captured
    handler.setFormatter(TextFormatter())
    with log_context(run_id="r-2"):
        logger.info("hello")
    assert stream.getvalue().rstrip().endswith("hello [run_id=r-2]")
