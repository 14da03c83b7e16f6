"""The driver registry: built-ins, entry points, and the did-you-mean error."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from app import drivers
from app.drivers import (
    BUILTIN_DRIVERS,
    UnknownDriver,
    driver_types,
    get_driver,
    param_schemas,
)
from app.drivers.http_request import HttpRequestDriver
from app.errors import PermanentDriverError


@pytest.fixture
def fresh_registry() -> Iterator[None]:
    """Forget cached entry points and drivers before and after the test."""
    drivers.registry.cache_clear()
    get_driver.cache_clear()
    yield
    drivers.registry.cache_clear()
    get_driver.cache_clear()


def test_builtin_types_are_registered() -> None:
    assert set(BUILTIN_DRIVERS) <= set(driver_types())
    assert {"conditional", "transform", "http_request", "data_fetch", "webhook"} <= set(
        driver_types()
    )


def test_unknown_type_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownDriver, match=r"No such node type: webhok\. Did you mean webhook\?"):
        get_driver("webhok")


def test_unknown_type_without_a_close_name_has_no_suggestion() -> None:
    with pytest.raises(UnknownDriver) as caught:
        get_driver("zzzzzz")
    assert str(caught.value) == "No such node type: zzzzzz."
    assert caught.value.suggestion is None


def test_unknown_driver_is_a_permanent_error() -> None:
    assert issubclass(UnknownDriver, PermanentDriverError)


def test_drivers_are_cached() -> None:
    assert get_driver("webhook") is get_driver("webhook")


def test_data_fetch_is_an_http_request_driver() -> None:
    assert isinstance(get_driver("data_fetch"), HttpRequestDriver)
    assert get_driver("data_fetch").type == "data_fetch"


def test_param_schemas_cover_every_type() -> None:
    schemas = param_schemas()
    assert set(schemas) == set(driver_types())
    assert all(issubclass(schema, BaseModel) for schema in schemas.values())


def test_entry_point_drivers_are_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    """A real installed distribution (a dist-info on sys.path) adds a node type."""
    (tmp_path / "dualmcp_echo_driver.py").write_text(
        textwrap.dedent(
            '''
            from pydantic import BaseModel
            from app.drivers.base import Driver

            class EchoDriver(Driver):
                """Echo its params (a plug-in for the registry test)."""
                type = "echo_node"
                class Params(BaseModel):
                    text: str = ""
                def run(self, params, ctx):
                    return {"text": params.text}

            class ForgedWebhook(EchoDriver):
                """Tries to take over a built-in name."""
                type = "webhook"
            '''
        )
    )
    dist_info = tmp_path / "dualmcp_echo_driver-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dualmcp-echo-driver\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(
        "[dualmcp.drivers]\n"
        "echo_node = dualmcp_echo_driver:EchoDriver\n"
        "webhook = dualmcp_echo_driver:ForgedWebhook\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    assert "echo_node" in driver_types()
    assert get_driver("echo_node").type == "echo_node"
    assert type(get_driver("webhook")).__name__ == "WebhookDriver"  # built-ins win
