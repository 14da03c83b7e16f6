"""Webhook signature checks on raw bytes: the dispatch table, Standard Webhooks, GitHub and
Stripe, rotation, and every failure reason (Slack, Twilio, token: tests/web/schemes)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from typing import get_args

import pytest
from standardwebhooks import Webhook

from app.engine.schema import SignatureScheme
from app.web.signatures import SCHEMES, SignatureInvalid, UnknownScheme, verify

NOW = 1_700_000_000.0
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
BODY = b'{"lead_id": "42"}'

# GitHub's published example (docs: "Validating webhook deliveries").
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def standard_headers(
    secret: str = SECRET, body: bytes = BODY, at: float = NOW, message_id: str = "msg_1"
) -> dict[str, str]:
    signed_at = datetime.fromtimestamp(at, UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": Webhook(secret).sign(message_id, signed_at, body.decode()),
    }


def stripe_header(secret: str, body: bytes, at: float = NOW) -> str:
    digest = hmac.new(secret.encode(), f"{int(at)}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={int(at)},v1={digest}"


def reason_of(scheme: str, secrets: list[str], body: bytes, headers: dict[str, str]) -> str:
    with pytest.raises(SignatureInvalid) as caught:
        verify(scheme, secrets, body, headers, NOW)
    return caught.value.reason


# Standard Webhooks


def test_standard_signature_is_accepted_and_keyed_on_webhook_id() -> None:
    verified = verify("standard", [SECRET], BODY, standard_headers(), NOW)
    assert verified.idempotency_key == "msg_1"


def test_standard_signature_is_what_the_package_itself_accepts() -> None:
    headers = standard_headers(at=datetime.now(UTC).timestamp())
    Webhook(SECRET).verify(BODY, headers)  # the reference implementation agrees
    verify("standard", [SECRET], BODY, headers, datetime.now(UTC).timestamp())


def test_headers_are_matched_without_regard_to_case() -> None:
    headers = {name.title(): value for name, value in standard_headers().items()}
    assert verify("standard", [SECRET], BODY, headers, NOW).idempotency_key == "msg_1"


def test_a_second_active_secret_verifies_during_rotation() -> None:
    headers = standard_headers(secret=OLD_SECRET)
    assert verify("standard", [SECRET, OLD_SECRET], BODY, headers, NOW).idempotency_key == "msg_1"


def test_any_of_several_presented_signatures_may_match() -> None:
    headers = standard_headers()
    other = standard_headers(secret=OLD_SECRET)["webhook-signature"]
    headers["webhook-signature"] = f"{other} v1a,ignored {headers['webhook-signature']}"
    verify("standard", [SECRET], BODY, headers, NOW)


def test_missing_standard_headers_are_reason_missing() -> None:
    headers = standard_headers()
    del headers["webhook-signature"]
    assert reason_of("standard", [SECRET], BODY, headers) == "missing"


def test_a_tampered_body_is_reason_mismatch() -> None:
    assert reason_of("standard", [SECRET], b'{"lead_id": "43"}', standard_headers()) == "mismatch"


def test_a_signature_by_a_retired_secret_is_reason_mismatch() -> None:
    assert reason_of("standard", [SECRET], BODY, standard_headers(secret=OLD_SECRET)) == "mismatch"


def test_a_signature_that_is_not_base64_is_reason_malformed() -> None:
    headers = {**standard_headers(), "webhook-signature": "v1,not*base64"}
    assert reason_of("standard", [SECRET], BODY, headers) == "malformed"


def test_a_timestamp_that_is_not_a_number_is_reason_malformed() -> None:
    headers = {**standard_headers(), "webhook-timestamp": "yesterday"}
    assert reason_of("standard", [SECRET], BODY, headers) == "malformed"


def test_a_timestamp_over_five_minutes_old_is_reason_stale() -> None:
    assert reason_of("standard", [SECRET], BODY, standard_headers(at=NOW - 301)) == "stale"


def test_a_timestamp_over_five_minutes_ahead_is_reason_future() -> None:
    assert reason_of("standard", [SECRET], BODY, standard_headers(at=NOW + 301)) == "future"


@pytest.mark.parametrize("offset", [-300, 300])
def test_five_minutes_either_way_is_within_tolerance(offset: int) -> None:
    verify("standard", [SECRET], BODY, standard_headers(at=NOW + offset), NOW)


def test_a_body_that_is_not_utf8_is_reason_malformed() -> None:
    assert reason_of("standard", [SECRET], b"\xff\xfe", standard_headers()) == "malformed"


# GitHub


def test_github_published_test_vector_verifies() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "d-1"}
    verified = verify("github", [GITHUB_SECRET], GITHUB_PAYLOAD, headers, NOW)
    assert verified.idempotency_key == "d-1"


def test_github_without_a_delivery_id_is_keyed_on_the_body_hash() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    verified = verify("github", [GITHUB_SECRET], GITHUB_PAYLOAD, headers, NOW)
    assert verified.idempotency_key == "sha256:" + hashlib.sha256(GITHUB_PAYLOAD).hexdigest()


def test_github_tampered_payload_is_reason_mismatch() -> None:
    headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE}
    assert reason_of("github", [GITHUB_SECRET], b"Hello, World?", headers) == "mismatch"


@pytest.mark.parametrize("value", ["sha1=757107ea", "sha256=zz", "757107ea0eb2509fc211"])
def test_github_header_not_sha256_hex_is_reason_malformed(value: str) -> None:
    headers = {"X-Hub-Signature-256": value}
    assert reason_of("github", [GITHUB_SECRET], GITHUB_PAYLOAD, headers) == "malformed"


def test_github_without_a_signature_is_reason_missing() -> None:
    assert reason_of("github", [GITHUB_SECRET], GITHUB_PAYLOAD, {}) == "missing"


# Stripe


def test_stripe_signature_verifies_and_is_keyed_on_the_event_id() -> None:
    body = b'{"id": "evt_123", "type": "invoice.paid"}'
    headers = {"Stripe-Signature": stripe_header("whsec_stripe", body)}
    assert verify("stripe", ["whsec_stripe"], body, headers, NOW).idempotency_key == "evt_123"


def test_stripe_accepts_any_of_several_v1_signatures() -> None:
    body = b'{"id": "evt_1"}'
    good = stripe_header("whsec_new", body)
    header = f"{good},v1={'0' * 64},v0=legacy"
    verify("stripe", ["whsec_new"], body, {"Stripe-Signature": header}, NOW)


def test_stripe_body_without_an_id_is_keyed_on_the_body_hash() -> None:
    body = b"[1, 2]"
    headers = {"Stripe-Signature": stripe_header("k", body)}
    key = verify("stripe", ["k"], body, headers, NOW).idempotency_key
    assert key == "sha256:" + hashlib.sha256(body).hexdigest()


def test_stripe_stale_timestamp_is_reason_stale() -> None:
    body = b'{"id": "evt_1"}'
    headers = {"Stripe-Signature": stripe_header("k", body, at=NOW - 400)}
    assert reason_of("stripe", ["k"], body, headers) == "stale"


def test_stripe_future_timestamp_is_reason_future() -> None:
    body = b'{"id": "evt_1"}'
    headers = {"Stripe-Signature": stripe_header("k", body, at=NOW + 400)}
    assert reason_of("stripe", ["k"], body, headers) == "future"


def test_stripe_signature_over_another_timestamp_is_reason_mismatch() -> None:
    body = b'{"id": "evt_1"}'
    header = stripe_header("k", body).replace(f"t={int(NOW)}", f"t={int(NOW) + 1}")
    assert reason_of("stripe", ["k"], body, {"Stripe-Signature": header}) == "mismatch"


@pytest.mark.parametrize("header", ["v1=abc", f"t={int(NOW)}", "t=soon,v1=" + "0" * 64])
def test_stripe_header_without_t_or_v1_is_reason_malformed(header: str) -> None:
    assert reason_of("stripe", ["k"], b"{}", {"Stripe-Signature": header}) == "malformed"


# Configuration


def test_an_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(UnknownScheme, match="gitlab"):
        verify("gitlab", ["k"], BODY, {}, NOW)


def test_no_secret_is_never_a_pass() -> None:
    with pytest.raises(ValueError, match="secret"):
        verify("github", [], GITHUB_PAYLOAD, {"X-Hub-Signature-256": GITHUB_SIGNATURE}, NOW)


def test_the_failure_message_never_holds_a_secret() -> None:
    with pytest.raises(SignatureInvalid) as caught:
        verify("standard", [SECRET], b"tampered", standard_headers(), NOW)
    assert SECRET not in str(caught.value)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)


def test_every_scheme_a_trigger_may_name_has_a_verifier() -> None:
    assert set(SCHEMES) == set(get_args(SignatureScheme))
