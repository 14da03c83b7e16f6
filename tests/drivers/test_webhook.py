"""The outgoing webhook: Standard Webhooks signature and idempotency headers, as received."""

from __future__ import annotations

import base64
import json

import pytest
from standardwebhooks import Webhook

from app.drivers.base import idempotency_key
from app.drivers.webhook import WebhookDriver
from app.errors import PermanentDriverError, RetryableDriverError
from tests.drivers.conftest import MakeContext
from tests.http_peer import HttpPeer

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
driver = WebhookDriver()


def params(**values: object) -> WebhookDriver.Params:
    return WebhookDriver.Params.model_validate(values)


def test_signature_verifies_on_the_receiving_side(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    payload = {"lead": "Ada Lovelace", "score": 91, "note": "café"}
    driver.run(params(url=f"{http_peer.url}/wh/signed", payload=payload, secret=SECRET), make_ctx())
    [request] = http_peer.requests_to("/wh/signed")
    assert Webhook(SECRET).verify(request.body, request.headers) == payload
    assert request.headers["content-type"] == "application/json"


def test_webhook_id_and_idempotency_key_are_the_node_key(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    driver.run(params(url=f"{http_peer.url}/wh/key"), make_ctx(run_id="r-42", node_id="notify"))
    [request] = http_peer.requests_to("/wh/key")
    key = idempotency_key("r-42", "notify")
    assert request.headers["webhook-id"] == key
    assert request.headers["idempotency-key"] == key


def test_a_second_attempt_sends_the_same_key(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/wh/flaky", json={"ok": True}, fail_times=1)
    hook = params(url=f"{http_peer.url}/wh/flaky", payload={"a": 1}, secret=SECRET)
    with pytest.raises(RetryableDriverError):
        driver.run(hook, make_ctx(attempt=1))
    output = driver.run(hook, make_ctx(attempt=2))
    first, second = http_peer.requests_to("/wh/flaky")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == output["id"]
    assert Webhook(SECRET).verify(second.body, second.headers) == {"a": 1}


def test_output_names_backend_key_and_status(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/wh/accepted", status=202)
    ctx = make_ctx()
    output = driver.run(params(url=f"{http_peer.url}/wh/accepted"), ctx)
    assert output == {"backend": "http", "id": ctx.idempotency_key, "status": 202}


def test_unsigned_without_a_secret(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    driver.run(params(url=f"{http_peer.url}/wh/plain"), make_ctx())
    [request] = http_peer.requests_to("/wh/plain")
    assert "webhook-signature" not in request.headers
    assert request.json == {}


def test_node_headers_cannot_replace_the_idempotency_headers(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    ctx = make_ctx()
    headers = {"webhook-id": "forged", "X-Team": "sales"}
    driver.run(params(url=f"{http_peer.url}/wh/headers", headers=headers), ctx)
    [request] = http_peer.requests_to("/wh/headers")
    assert request.headers["webhook-id"] == ctx.idempotency_key
    assert request.headers["x-team"] == "sales"


def test_client_error_is_permanent(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/wh/bad", status=400)
    with pytest.raises(PermanentDriverError, match="400"):
        driver.run(params(url=f"{http_peer.url}/wh/bad"), make_ctx())


def test_redirects_are_not_followed(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    http_peer.reply("/wh/moved", status=301, headers={"Location": "/wh/elsewhere"})
    with pytest.raises(PermanentDriverError, match="301"):
        driver.run(params(url=f"{http_peer.url}/wh/moved"), make_ctx())
    assert http_peer.requests_to("/wh/elsewhere") == []


def test_secret_never_appears_in_output_or_errors(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    http_peer.reply("/wh/secret-fail", status=401)
    hook = params(url=f"{http_peer.url}/wh/secret-ok", secret=SECRET)
    output = driver.run(hook, make_ctx())
    assert SECRET[6:] not in json.dumps(output)
    assert SECRET[6:] not in repr(hook)
    with pytest.raises(PermanentDriverError) as caught:
        driver.run(params(url=f"{http_peer.url}/wh/secret-fail", secret=SECRET), make_ctx())
    assert SECRET[6:] not in str(caught.value)


def test_malformed_secret_is_permanent_and_not_echoed(
    http_peer: HttpPeer, make_ctx: MakeContext
) -> None:
    with pytest.raises(PermanentDriverError, match="whsec_") as caught:
        driver.run(params(url=f"{http_peer.url}/wh/x", secret="whsec_not*base64!"), make_ctx())
    assert "not*base64" not in str(caught.value)
    assert http_peer.requests_to("/wh/x") == []


def test_payload_with_nan_is_permanent(http_peer: HttpPeer, make_ctx: MakeContext) -> None:
    with pytest.raises(PermanentDriverError, match="NaN"):
        driver.run(params(url=f"{http_peer.url}/wh/nan", payload={"x": float("nan")}), make_ctx())
    assert http_peer.requests_to("/wh/nan") == []
