"""The remote-tool client against a real MCP server (the SDK's, on loopback), through the guard."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Literal

import httpx
import pytest

from app.config import Settings
from app.errors import BlockedDestination, PermanentDriverError, RetryableDriverError
from app.mcp import McpToolClient, RemoteResult, credential_headers
from app.safe_http import make_http_client
from tests.http_peer import HttpPeer
from tests.mcp_peers import McpPeer, PeerCall, PeerRequest

Mode = Literal["auto", "legacy"]
MODES: list[Mode] = ["auto", "legacy"]


@pytest.fixture
def peer() -> Iterator[McpPeer]:
    with McpPeer() as server:
        yield server


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """The guarded client with loopback allowed, as a test deployment would set it."""
    with make_http_client(Settings(http_allowlist="127.0.0.1"), timeout_s=5) as guarded:
        yield guarded


@pytest.fixture
def strict_http() -> Iterator[httpx.Client]:
    """The guarded client with production defaults: loopback refused."""
    with make_http_client(Settings(http_allowlist="")) as guarded:
        yield guarded


@pytest.mark.parametrize("mode", MODES)
def test_lists_every_tool_with_its_schema(peer: McpPeer, http: httpx.Client, mode: Mode) -> None:
    with McpToolClient(peer.url, peer.headers, http, timeout_s=5, mode=mode) as client:
        tools = {tool.name: tool for tool in client.list_tools()}

    assert sorted(tools) == ["add", "echo", "fail", "slow"]
    assert tools["add"].description == "Add two numbers."
    assert tools["add"].input_schema["required"] == ["a", "b"]


def test_allow_lists_only_the_allowed_tools(peer: McpPeer, http: httpx.Client) -> None:
    with McpToolClient(peer.url, peer.headers, http, allow=["add", "absent"]) as client:
        assert [tool.name for tool in client.list_tools()] == ["add"]


@pytest.mark.parametrize("mode", MODES)
def test_a_call_returns_the_text_and_the_structured_content(
    peer: McpPeer, http: httpx.Client, mode: Mode
) -> None:
    with McpToolClient(peer.url, peer.headers, http, mode=mode) as client:
        result = client.call_tool("add", {"a": 2, "b": 3})

    assert result == RemoteResult(ok=True, text='{"sum": 5}', structured={"sum": 5})
    assert peer.calls == [PeerCall("add", {"a": 2, "b": 3})]


def test_one_connection_serves_several_calls(peer: McpPeer, http: httpx.Client) -> None:
    with McpToolClient(peer.url, peer.headers, http) as client:
        sums = [client.call_tool("add", {"a": n, "b": 1}).structured for n in range(3)]

    assert sums == [{"sum": 1}, {"sum": 2}, {"sum": 3}]


def test_a_tool_error_is_a_failed_result(peer: McpPeer, http: httpx.Client) -> None:
    with McpToolClient(peer.url, peer.headers, http) as client:
        result = client.call_tool("fail", {})

    assert result == RemoteResult(ok=False, text="failed on purpose", structured=None)


def test_a_tool_not_allowed_is_an_error_result_that_reaches_no_server(
    peer: McpPeer, http: httpx.Client
) -> None:
    with McpToolClient(peer.url, peer.headers, http, allow=["add"]) as client:
        result = client.call_tool("fail", {})

    assert not result.ok
    assert "'fail' is not allowed" in result.text
    assert peer.calls == []


@pytest.mark.parametrize("mode", MODES)
def test_a_slow_call_ends_at_its_own_timeout_and_the_connection_lives_on(
    peer: McpPeer, http: httpx.Client, mode: Mode
) -> None:
    with McpToolClient(peer.url, peer.headers, http, timeout_s=10, mode=mode) as client:
        started = time.monotonic()
        with pytest.raises(
            RetryableDriverError, match=r"no answer within 1 s while calling 'slow'"
        ):
            client.call_tool("slow", {"seconds": 5}, timeout_s=1)
        assert time.monotonic() - started < 2

        assert client.call_tool("add", {"a": 1, "b": 1}).structured == {"sum": 2}


def test_an_answer_over_the_size_cap_breaks_the_connection_with_a_permanent_error(
    peer: McpPeer,
) -> None:
    settings = Settings(http_allowlist="127.0.0.1", http_max_response_bytes=4000)
    with (
        make_http_client(settings, timeout_s=5) as capped,
        McpToolClient(peer.url, peer.headers, capped) as client,
    ):
        assert client.call_tool("echo", {"text": "short"}).text == "short"
        with pytest.raises(PermanentDriverError, match=r"127\.0\.0\.1: response larger than 4000"):
            client.call_tool("echo", {"text": "x" * 5000})
        with pytest.raises(PermanentDriverError, match=r"response larger than 4000"):
            client.call_tool("add", {"a": 1, "b": 1})  # the connection is gone; it says why


def test_a_wrong_token_is_a_permanent_error_that_does_not_show_it(
    peer: McpPeer, http: httpx.Client
) -> None:
    wrong = "wrong-token-4f2a9c"
    with (
        pytest.raises(
            PermanentDriverError, match=r"127\.0\.0\.1.*credential was refused"
        ) as caught,
        McpToolClient(peer.url, {"Authorization": f"Bearer {wrong}"}, http),
    ):
        pass

    assert wrong not in str(caught.value)
    assert peer.calls == []


def test_the_credential_reaches_the_server_as_a_bearer_header(
    peer: McpPeer, http: httpx.Client
) -> None:
    with McpToolClient(peer.url, credential_headers(peer.token), http) as client:
        client.list_tools()

    assert peer.requests
    assert {request.authorization for request in peer.requests} == {f"Bearer {peer.token}"}


def test_the_ssrf_guard_refuses_a_loopback_server_not_allowlisted(
    peer: McpPeer, strict_http: httpx.Client
) -> None:
    started = time.monotonic()
    with (
        pytest.raises(BlockedDestination, match=r"refused by the SSRF guard.*loopback"),
        McpToolClient(peer.url, peer.headers, strict_http),
    ):
        pass

    assert time.monotonic() - started < 2  # refused once, not retried
    assert peer.requests == []


def test_the_ssrf_guard_lets_an_allowlisted_server_through(
    peer: McpPeer, http: httpx.Client
) -> None:
    with McpToolClient(peer.url, peer.headers, http) as client:
        assert client.call_tool("add", {"a": 1, "b": 2}).ok

    assert PeerRequest("POST", f"Bearer {peer.token}") in peer.requests


def test_a_same_origin_redirect_is_followed_through_the_guard(
    peer: McpPeer, http: httpx.Client
) -> None:
    with McpToolClient(f"{peer.url}/", peer.headers, http) as client:  # 307 -> /mcp
        assert client.call_tool("add", {"a": 1, "b": 2}).structured == {"sum": 3}


def test_the_metadata_address_is_refused(http: httpx.Client) -> None:
    with (
        pytest.raises(BlockedDestination, match=r"169\.254\.169\.254"),
        McpToolClient("http://169.254.169.254/mcp", {}, http),
    ):
        pass


def test_an_unreachable_server_is_a_retryable_error(http: httpx.Client) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with (
        pytest.raises(RetryableDriverError, match=r"127\.0\.0\.1: could not reach"),
        McpToolClient(f"http://127.0.0.1:{port}/mcp", {}, http),
    ):
        pass


def test_a_server_that_never_answers_is_cut_off_while_connecting(
    http: httpx.Client, http_peer: HttpPeer
) -> None:
    http_peer.reply("/mcp-silent", json={}, delay_s=10)
    started = time.monotonic()
    with (
        pytest.raises(RetryableDriverError, match=r"no answer within 1 s while connecting"),
        McpToolClient(f"{http_peer.url}/mcp-silent", {}, http, timeout_s=1),
    ):
        pass

    assert time.monotonic() - started < 2


def test_a_server_error_status_is_retryable(http: httpx.Client, http_peer: HttpPeer) -> None:
    http_peer.reply("/mcp-down", status=503, json={"error": "maintenance"})
    with (
        pytest.raises(RetryableDriverError, match=r"answered HTTP 503"),
        McpToolClient(f"{http_peer.url}/mcp-down", {}, http, timeout_s=2),
    ):
        pass


@pytest.mark.parametrize("mode", MODES)
def test_sse_answers_and_a_legacy_session_work_through_the_guard(
    http: httpx.Client, mode: Mode
) -> None:
    # A stateful server answering in SSE: legacy clients get a session, a GET stream and a DELETE.
    with McpPeer(json_response=False, stateless=False) as server:
        started = time.monotonic()
        with McpToolClient(server.url, server.headers, http, timeout_s=5, mode=mode) as client:
            result = client.call_tool("add", {"a": 20, "b": 22})
        assert time.monotonic() - started < 3  # closing does not wait on the open GET stream

    assert result.structured == {"sum": 42}


def test_calls_after_the_connection_is_closed_are_refused(
    peer: McpPeer, http: httpx.Client
) -> None:
    client = McpToolClient(peer.url, peer.headers, http)
    with client:
        pass
    with pytest.raises(RuntimeError, match="outside its `with` block"):
        client.list_tools()


def test_a_url_that_is_no_url_is_a_permanent_error(http: httpx.Client) -> None:
    with pytest.raises(PermanentDriverError, match="not a URL"):
        McpToolClient("http://[::1", {}, http)


def test_a_token_credential_becomes_a_bearer_header() -> None:
    assert credential_headers("abc123") == {"Authorization": "Bearer abc123"}


def test_a_header_credential_names_its_own_header() -> None:
    value = {"header": "X-Api-Key", "value": "k-1"}
    assert credential_headers(value) == {"X-Api-Key": "k-1"}


@pytest.mark.parametrize(
    "value",
    ["", "two\nlines", {"header": "Bad Header", "value": "secret-x"}, {"header": "X-Key"}],
)
def test_an_unusable_credential_is_refused_without_showing_it(value: object) -> None:
    with pytest.raises(PermanentDriverError) as caught:
        credential_headers(value)  # type: ignore[arg-type]
    assert "secret-x" not in str(caught.value)
