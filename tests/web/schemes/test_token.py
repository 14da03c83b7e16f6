"""The trigger-token scheme: a bearer header or `?token=`, compared by digest in constant time."""

from __future__ import annotations

import pytest

from app.web.signatures import SignatureInvalid, body_key, verify
from app.workflows.trigger_tokens import TOKEN_PREFIX, new_token, token_digest

TOKEN = new_token()
DIGEST = token_digest(TOKEN)
BODY = b'{"event": "delivered"}'
URL = "https://dualmcp.example.com/api/triggers/webhook/wf"
NOW = 1_700_000_000.0


def reason(given: dict[str, str], url: str = URL) -> str:
    with pytest.raises(SignatureInvalid) as caught:
        verify("token", [DIGEST], BODY, given, NOW, url=url)
    return caught.value.reason


def test_tokens_are_prefixed_random_and_stored_as_their_sha256() -> None:
    assert TOKEN.startswith(TOKEN_PREFIX) and len(TOKEN) > 40
    assert new_token() != TOKEN
    assert len(DIGEST) == 64 and TOKEN not in DIGEST


def test_a_bearer_token_verifies_and_is_keyed_on_the_body_hash() -> None:
    verified = verify("token", [DIGEST], BODY, {"Authorization": f"Bearer {TOKEN}"}, NOW, url=URL)
    assert verified.idempotency_key == body_key(BODY)


def test_the_bearer_scheme_name_is_case_insensitive() -> None:
    verify("token", [DIGEST], BODY, {"authorization": f"bearer {TOKEN}"}, NOW, url=URL)


def test_a_query_token_verifies() -> None:
    verify("token", [DIGEST], BODY, {}, NOW, url=f"{URL}?source=sns&token={TOKEN}")


def test_an_idempotency_key_header_is_the_delivery_id() -> None:
    given = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "evt-7"}
    assert verify("token", [DIGEST], BODY, given, NOW, url=URL).idempotency_key == "evt-7"


def test_no_token_is_reason_missing() -> None:
    assert reason({}) == "missing"
    assert reason({}, url=f"{URL}?token=") == "missing"


def test_a_wrong_token_is_reason_mismatch() -> None:
    assert reason({"Authorization": f"Bearer {new_token()}"}) == "mismatch"
    assert reason({}, url=f"{URL}?token={new_token()}") == "mismatch"


def test_the_digest_itself_is_not_a_token() -> None:
    assert reason({"Authorization": f"Bearer {DIGEST}"}) == "mismatch"


def test_an_authorization_that_is_not_bearer_is_reason_malformed() -> None:
    assert reason({"Authorization": f"Basic {TOKEN}"}) == "malformed"


def test_the_refusal_never_holds_the_token() -> None:
    for given, url in [
        ({"Authorization": f"Bearer {TOKEN}x"}, URL),
        ({"Authorization": f"Basic {TOKEN}"}, URL),
        ({}, f"{URL}?token={TOKEN}&token={TOKEN}"),
    ]:
        with pytest.raises(SignatureInvalid) as caught:
            verify("token", [DIGEST], BODY, given, NOW, url=url)
        assert TOKEN not in str(caught.value)
