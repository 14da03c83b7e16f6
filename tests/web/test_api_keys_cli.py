"""`dualmcp keys create | list | revoke`: stored keys are listed by an id drawn from their hash,
never shown again, and a revoked key stops working at the next request."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from app.apikeys import KEY_ID_LENGTH, hash_key
from app.cli import main
from app.config import get_settings
from app.models import ApiKey

Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Cli]:
    """Run `dualmcp ...` against the test's database; returns (exit code, stdout, stderr)."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DUALMCP_API_KEYS", "admin:env-admin-key-for-the-cli-test")

    def run(*argv: str) -> tuple[int, str, str]:
        get_settings.cache_clear()
        code = main(list(argv))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield run
    get_settings.cache_clear()


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_created_key_is_listed_by_id_and_works_until_revoked(
    cli: Cli, client: FlaskClient
) -> None:
    code, out, _ = cli("keys", "create", "--scope", "read", "--name", "dashboard")
    key = out.strip()
    assert code == 0 and key.startswith("dmcp_")
    assert client.get("/api/workflows", headers=_auth(key)).status_code == 200

    code, listing, _ = cli("keys", "list")
    key_id = hash_key(key)[:KEY_ID_LENGTH]
    assert code == 0
    (row,) = [line for line in listing.splitlines() if line.startswith(key_id)]
    assert row.split()[1:2] == ["read"] and row.endswith("dashboard")
    assert key not in listing
    assert "1 key(s) from DUALMCP_API_KEYS" in listing

    code, out, _ = cli("keys", "revoke", key_id)
    assert code == 0 and out.strip() == f"revoked {key_id} (read, dashboard)"
    assert client.get("/api/workflows", headers=_auth(key)).status_code == 401
    assert key_id not in cli("keys", "list")[1]


def test_a_key_can_be_revoked_by_itself_and_only_once(cli: Cli) -> None:
    key = cli("keys", "create", "--scope", "admin")[1].strip()
    assert cli("keys", "revoke", key)[0] == 0
    code, _, err = cli("keys", "revoke", key)
    assert code == 1 and "no stored key matches that key" in err
    assert key not in err


def test_an_id_that_matches_several_keys_revokes_none(
    cli: Cli, web_sessions: sessionmaker[Session]
) -> None:
    with web_sessions.begin() as session:
        for tail in ("0", "1"):
            session.add(ApiKey(key_hash="abcdef12" + tail * 56, scope="read", name=tail))
    code, _, err = cli("keys", "revoke", "abcdef12")
    assert code == 1 and "2 keys start with abcdef12" in err
    assert cli("keys", "revoke", "abcdef121")[0] == 0
    listing = cli("keys", "list")[1]
    assert "abcdef120000" in listing and "abcdef121111" not in listing


@pytest.mark.parametrize("given", ["abc", "not-hex-at-all", "ABCDEF1234"])
def test_a_malformed_id_revokes_nothing(cli: Cli, given: str) -> None:
    code, _, err = cli("keys", "revoke", given)
    assert code == 1 and "at least 8 hex characters" in err
