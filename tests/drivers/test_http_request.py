"""http_request / data_fetch against a real server on loopback."""

from __future__ import annotations

import socket

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.drivers.http_request import DataFetchDriver, HttpRequestDriver
from app.errors import BlockedDestination, NodeTimeout, PermanentDriverError, RetryableDriverError
from app.safe_http import make_http_client
from tests.drivers.conftest import MakeContext
from tests.http_peer import HttpPeer

driver = HttpRequestDriver()


def params(**values: object) -> HttpRequestDriver.Params:
    return HttpRequestDriver.Params.model_validate(values)


def test_output_has_status_headers_json_and_text(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/lead", json={"score": 91}, headers={"X-Trace": "abc"})
    output = driver.run(params(url=f"{http_peer.url}/hr/lead"), make_ctx())
    assert output["status"] == 200
    assert output["json"] == {"score": 91}
    assert output["text"] == '{"score": 91}'
    assert output["headers"]["x-trace"] == "abc"


def test_json_is_none_when_the_body_is_not_json(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/hr/text", body="hello")
    output = driver.run(params(url=f"{http_peer.url}/hr/text"), make_ctx())
    assert output["json"] is None
    assert output["text"] == "hello"


def test_nan_is_not_json(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/hr/nan", body='{"x": NaN}')
    assert driver.run(params(url=f"{http_peer.url}/hr/nan"), make_ctx())["json"] is None


def test_method_query_headers_and_json_body_are_sent(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    driver.run(
        params(
            url=f"{http_peer.url}/hr/post",
            method="post",
            headers={"X-Api-Key": "k"},
            query={"page": 2, "full": True, "q": "a b"},
            json={"name": "Ada"},
        ),
        make_ctx(),
    )
    [request] = http_peer.requests_to("/hr/post")
    assert request.method == "POST"
    assert request.path == "/hr/post?page=2&full=true&q=a+b"
    assert request.headers["x-api-key"] == "k"
    assert request.json == {"name": "Ada"}


def test_raw_body_is_sent_as_is(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    driver.run(params(url=f"{http_peer.url}/hr/raw", method="PUT", body="a=1"), make_ctx())
    assert http_peer.requests_to("/hr/raw")[0].body == b"a=1"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_server_errors_and_429_are_retryable(
    http_peer: HttpPeer, make_ctx: MakeContext, status: int
) -> None:
    http_peer.reply(f"/hr/status/{status}", status=status)
    with pytest.raises(RetryableDriverError, match=str(status)):
        driver.run(params(url=f"{http_peer.url}/hr/status/{status}"), make_ctx())


def test_a_client_error_is_permanent_and_names_the_status(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/missing", status=404)
    with pytest.raises(PermanentDriverError, match="404") as caught:
        driver.run(params(url=f"{http_peer.url}/hr/missing"), make_ctx())
    assert not isinstance(caught.value, RetryableDriverError)


def test_fail_on_status_false_outputs_any_status(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/gone", status=410, json={"why": "gone"})
    http_peer.reply("/hr/broken", status=502)
    url = f"{http_peer.url}/hr"
    gone = driver.run(params(url=f"{url}/gone", fail_on_status=False), make_ctx())
    broken = driver.run(params(url=f"{url}/broken", fail_on_status=False), make_ctx())
    assert (gone["status"], gone["json"]) == (410, {"why": "gone"})
    assert broken["status"] == 502


def test_failing_then_succeeding_server_succeeds_on_a_later_attempt(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/flaky", json={"ok": True}, fail_times=1)
    with pytest.raises(RetryableDriverError):
        driver.run(params(url=f"{http_peer.url}/hr/flaky"), make_ctx(attempt=1))
    assert driver.run(params(url=f"{http_peer.url}/hr/flaky"), make_ctx(attempt=2))["json"] == {
        "ok": True
    }


def test_slow_server_raises_node_timeout(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/hr/slow", json={}, delay_s=3)
    with pytest.raises(NodeTimeout, match=r"timed out after 0\.2s"):
        driver.run(params(url=f"{http_peer.url}/hr/slow"), make_ctx(timeout_s=0.2))


def test_params_timeout_is_capped_by_the_node_timeout(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/slow-capped", json={}, delay_s=3)
    with pytest.raises(NodeTimeout, match=r"timed out after 0\.2s"):
        driver.run(
            params(url=f"{http_peer.url}/hr/slow-capped", timeout_s=60), make_ctx(timeout_s=0.2)
        )


def test_refused_connection_is_retryable(make_ctx: MakeContext) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableDriverError, match=r"could not reach 127\.0\.0\.1"):
        driver.run(params(url=f"http://127.0.0.1:{port}/x"), make_ctx())


def test_errors_leave_out_query_strings_and_header_values(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/denied", status=403)
    with pytest.raises(PermanentDriverError) as caught:
        driver.run(
            params(
                url=f"{http_peer.url}/hr/denied?api_key=s3cret",
                headers={"Authorization": "Bearer t0ken"},
            ),
            make_ctx(),
        )
    assert "s3cret" not in str(caught.value)
    assert "t0ken" not in str(caught.value)


def test_private_destination_is_blocked(make_ctx: MakeContext) -> None:
    with pytest.raises(BlockedDestination):
        driver.run(params(url="http://10.0.0.1/admin"), make_ctx())


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com", "javascript:alert(1)"])
def test_non_http_url_fails_validation(url: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        params(url=url)


def test_templated_url_passes_save_time_validation() -> None:
    assert params(url="{{ trigger.crm_url }}").url == "{{ trigger.crm_url }}"


def test_json_and_body_are_exclusive() -> None:
    with pytest.raises(ValidationError, match="either json or body"):
        params(url="http://example.com", json={"a": 1}, body="a")


def test_unknown_params_are_refused() -> None:
    with pytest.raises(ValidationError, match="urll"):
        params(url="http://example.com", urll="typo")


def test_data_fetch_is_http_request_under_its_own_name(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/fetch", json=[1, 2])
    fetch = DataFetchDriver()
    assert fetch.type == "data_fetch"
    assert fetch.run(fetch.Params.model_validate({"url": f"{http_peer.url}/hr/fetch"}), make_ctx())[
        "json"
    ] == [1, 2]


def test_non_ascii_header_is_permanent(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    with pytest.raises(PermanentDriverError, match="ASCII"):
        driver.run(params(url=f"{http_peer.url}/hr/h", headers={"X-Name": "café"}), make_ctx())


def test_header_with_a_newline_is_permanent_and_not_echoed(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    headers = {"X-Token": "s3cret\r\nX-Injected: 1"}
    with pytest.raises(PermanentDriverError) as caught:
        driver.run(params(url=f"{http_peer.url}/hr/inject", headers=headers), make_ctx())
    assert "s3cret" not in str(caught.value)
    assert http_peer.requests_to("/hr/inject") == []


def test_invalid_port_is_permanent(make_ctx: MakeContext) -> None:
    with pytest.raises(PermanentDriverError, match="invalid url"):
        driver.run(params(url="http://127.0.0.1:port/x"), make_ctx())


def test_response_over_the_size_cap_is_permanent(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/hr/huge", body="x" * 2048)
    settings = Settings(http_allowlist="127.0.0.1", http_max_response_bytes=1024)
    with make_http_client(settings) as small, pytest.raises(PermanentDriverError, match="1024"):
        driver.run(params(url=f"{http_peer.url}/hr/huge"), make_ctx(http=small))
