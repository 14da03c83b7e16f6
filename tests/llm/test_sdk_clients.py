"""SDK clients are reused per server, and config-named servers cannot grow the cache forever."""

from __future__ import annotations

from app.llm.base import SdkClients


def test_a_client_is_made_once_per_server() -> None:
    made: list[str | None] = []
    clients = SdkClients(lambda url: made.append(url) or object())

    first = clients.get("http://a/v1")
    assert clients.get("http://a/v1") is first
    clients.get(None)
    clients.get(None)

    assert made == ["http://a/v1", None]


def test_the_least_recently_used_config_server_goes_first_and_the_operators_stays() -> None:
    clients = SdkClients(lambda url: object(), limit=3)
    operator = clients.get(None)
    a = clients.get("http://a")
    b = clients.get("http://b")
    clients.get("http://a")  # a is used again: b is now the oldest
    clients.get("http://c")

    assert clients.get("http://a") is a
    assert clients.get("http://b") is not b  # dropped, made again
    assert clients.get(None) is operator
    assert clients.operator_client() is operator
