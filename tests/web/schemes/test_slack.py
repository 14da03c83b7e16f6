"""Slack's v0 signature on the raw body: its published example, and every refusal reason."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.web.signatures import SignatureInvalid, body_key, verify

# Slack's example (docs: "Verifying requests from Slack"): a slash command's form body.
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
STAMP = "1531420618"
BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
    b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-"
    b"collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977008"
    b"85554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c4"
    b"47fce8b6703c"
)
SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
NOW = float(STAMP)


def headers(signature: str = SIGNATURE, stamp: str = STAMP) -> dict[str, str]:
    return {"X-Slack-Signature": signature, "X-Slack-Request-Timestamp": stamp}


def sign(body: bytes, stamp: str, secret: str = SECRET) -> str:
    message = b"v0:" + stamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def reason(body: bytes, given: dict[str, str], now: float = NOW) -> str:
    with pytest.raises(SignatureInvalid) as caught:
        verify("slack", [SECRET], body, given, now)
    return caught.value.reason


def test_slack_published_example_verifies_and_is_keyed_on_the_body_hash() -> None:
    verified = verify("slack", [SECRET], BODY, headers(), NOW)
    assert verified.idempotency_key == body_key(BODY)


def test_a_second_signing_secret_verifies_during_rotation() -> None:
    verify("slack", ["an-older-signing-secret", SECRET], BODY, headers(), NOW)


def test_a_tampered_body_is_reason_mismatch() -> None:
    assert reason(BODY.replace(b"text=", b"text=hi"), headers()) == "mismatch"


def test_a_signature_over_another_timestamp_is_reason_mismatch() -> None:
    assert reason(BODY, headers(stamp=str(int(STAMP) + 1))) == "mismatch"


@pytest.mark.parametrize("missing", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_a_missing_header_is_reason_missing(missing: str) -> None:
    given = headers()
    del given[missing]
    assert reason(BODY, given) == "missing"


@pytest.mark.parametrize(
    "signature", ["v1=" + SIGNATURE[3:], "v0=abc", "a2114d57b48eac39b9ad189dd8316235", "v0=zz"]
)
def test_a_signature_that_is_not_v0_hex_is_reason_malformed(signature: str) -> None:
    assert reason(BODY, headers(signature=signature)) == "malformed"


def test_a_timestamp_that_is_not_a_number_is_reason_malformed() -> None:
    assert reason(BODY, headers(stamp="yesterday")) == "malformed"


def test_a_signature_over_five_minutes_old_is_reason_stale() -> None:
    assert reason(BODY, headers(), now=NOW + 301) == "stale"


def test_a_signature_over_five_minutes_ahead_is_reason_future() -> None:
    assert reason(BODY, headers(), now=NOW - 301) == "future"


def test_five_minutes_either_way_is_within_tolerance() -> None:
    verify("slack", [SECRET], BODY, headers(), NOW + 300)
    verify("slack", [SECRET], BODY, headers(), NOW - 300)


def test_a_json_events_api_body_is_signed_the_same_way() -> None:
    body = b'{"type": "event_callback", "event": {"type": "app_mention"}}'
    verify("slack", [SECRET], body, headers(sign(body, STAMP)), NOW)
