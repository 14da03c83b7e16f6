"""Twilio's X-Twilio-Signature, checked against the `twilio` SDK's RequestValidator (the oracle)
and Twilio's published example; form posts, JSON posts (bodySHA256), ports, every refusal."""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict  # what the SDK reads a Flask form as

from app.web.signatures import SignatureInvalid, body_key, verify

# Twilio's example (docs: "Webhooks security"; the SDK's tests use it too).
AUTH_TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
FORM = "application/x-www-form-urlencoded"
NOW = 1_700_000_000.0


def form(fields: dict[str, str] | list[tuple[str, str]]) -> bytes:
    return urlencode(fields).encode()


def headers(signature: str, content_type: str = FORM, **extra: str) -> dict[str, str]:
    return {"X-Twilio-Signature": signature, "Content-Type": content_type, **extra}


def reason(body: bytes, given: dict[str, str], url: str = URL) -> str:
    with pytest.raises(SignatureInvalid) as caught:
        verify("twilio", [AUTH_TOKEN], body, given, NOW, url=url)
    return caught.value.reason


def test_the_published_example_verifies() -> None:
    assert RequestValidator(AUTH_TOKEN).compute_signature(URL, PARAMS) == SIGNATURE
    verified = verify("twilio", [AUTH_TOKEN], form(PARAMS), headers(SIGNATURE), NOW, url=URL)
    assert verified.idempotency_key == body_key(form(PARAMS))


def test_the_field_order_in_the_body_does_not_matter() -> None:
    body = form(list(reversed(PARAMS.items())))
    verify("twilio", [AUTH_TOKEN], body, headers(SIGNATURE), NOW, url=URL)


def test_repeated_fields_and_blank_values_sign_as_the_sdk_signs_them() -> None:
    fields = [("Body", "hello world & more"), ("MediaUrl", "b"), ("MediaUrl", "a"), ("E", "")]
    signature = RequestValidator(AUTH_TOKEN).compute_signature(URL, MultiDict(fields))
    verify("twilio", [AUTH_TOKEN], form(fields), headers(signature), NOW, url=URL)


def test_a_url_signed_with_the_default_port_verifies_without_it() -> None:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS
    )
    verify("twilio", [AUTH_TOKEN], form(PARAMS), headers(signature), NOW, url=URL)


def test_a_url_with_a_port_verifies_a_signature_made_without_it() -> None:
    signature = RequestValidator(AUTH_TOKEN).compute_signature(URL, PARAMS)
    url = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    verify("twilio", [AUTH_TOKEN], form(PARAMS), headers(signature), NOW, url=url)


def test_a_json_body_is_signed_through_its_bodysha256() -> None:
    body = b'{"ProfileSid": "KP1", "Status": "ready"}'
    url = f"https://mycompany.com/hook?bodySHA256={hashlib.sha256(body).hexdigest()}"
    validator = RequestValidator(AUTH_TOKEN)
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, body.decode(), signature)  # the oracle agrees
    verify("twilio", [AUTH_TOKEN], body, headers(signature, "application/json"), NOW, url=url)


def test_a_json_body_that_is_not_the_one_hashed_in_the_url_is_reason_mismatch() -> None:
    body = b'{"Status": "ready"}'
    url = f"https://mycompany.com/hook?bodySHA256={hashlib.sha256(b'{}').hexdigest()}"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(url, {})
    assert reason(body, headers(signature, "application/json"), url=url) == "mismatch"


def test_the_idempotency_token_header_is_the_delivery_id() -> None:
    given = headers(SIGNATURE, **{"I-Twilio-Idempotency-Token": "a1b2-c3"})
    verified = verify("twilio", [AUTH_TOKEN], form(PARAMS), given, NOW, url=URL)
    assert verified.idempotency_key == "a1b2-c3"


def test_a_sharedkey_hmac_sha256_signature_verifies() -> None:
    validator = RequestValidator("a-shared-key-secret")
    signature = validator.compute_signature(URL, PARAMS, "HMAC_SHA256")
    settings = "key=webhooks_sharedkey_1,algorithm=HMAC_SHA256"
    given = headers(signature, **{"X-Twilio-Webhooks-Signature-Settings": settings})
    verify("twilio", ["a-shared-key-secret"], form(PARAMS), given, NOW, url=URL)


def test_a_second_auth_token_verifies_during_rotation() -> None:
    verify("twilio", ["54321", AUTH_TOKEN], form(PARAMS), headers(SIGNATURE), NOW, url=URL)


def test_another_url_is_reason_mismatch() -> None:
    url = "https://mycompany.com/myapp.php?foo=1&bar=3"
    assert reason(form(PARAMS), headers(SIGNATURE), url=url) == "mismatch"


def test_a_tampered_field_is_reason_mismatch() -> None:
    assert reason(form({**PARAMS, "Digits": "9999"}), headers(SIGNATURE)) == "mismatch"


def test_no_signature_is_reason_missing() -> None:
    assert reason(form(PARAMS), {"Content-Type": FORM}) == "missing"


@pytest.mark.parametrize("signature", ["not base64!", "AAAA", SIGNATURE + "AAAA"])
def test_a_signature_that_is_not_a_base64_sha1_is_reason_malformed(signature: str) -> None:
    assert reason(form(PARAMS), headers(signature)) == "malformed"


def test_an_unknown_algorithm_is_reason_malformed() -> None:
    given = headers(SIGNATURE, **{"X-Twilio-Webhooks-Signature-Settings": "algorithm=MD5"})
    assert reason(form(PARAMS), given) == "malformed"


def test_a_form_that_is_not_utf8_is_reason_malformed() -> None:
    assert reason(b"Body=%ff%fe", headers(SIGNATURE)) == "malformed"
