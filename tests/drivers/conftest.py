"""Driver fixtures: a NodeContext on the real SSRF-guarded client, allowed to reach loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.drivers.base import NodeContext
from app.safe_http import make_http_client

MakeContext = Callable[..., NodeContext]


@pytest.fixture
def settings() -> Settings:
    return Settings(http_allowlist="127.0.0.1")


@pytest.fixture
def http(settings: Settings) -> Iterator[httpx.Client]:
    with make_http_client(settings) as client:
        yield client


@pytest.fixture
def make_ctx(settings: Settings, http: httpx.Client) -> MakeContext:
    """Build a NodeContext; keyword arguments override the defaults (run_id, node_id, ...)."""

    def make(**overrides: Any) -> NodeContext:
        fields: dict[str, Any] = {
            "run_id": "run-1",
            "node_id": "node-1",
            "workflow_id": "wf-1",
            "attempt": 1,
            "timeout_s": 5.0,
            "settings": settings,
            "http": http,
        }
        return NodeContext(**{**fields, **overrides})

    return make
