"""Credentials at rest: Fernet with rotation, per workflow or agent, never shown."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.agents import LLMConfig, create_agent
from app.agents.store import delete_agent
from app.cli import main
from app.config import Settings
from app.credentials import (
    CannotDecrypt,
    EncryptionNotConfigured,
    cipher_for,
    delete_credential,
    find_credential,
    list_credentials,
    put_credential,
    rotate_credentials,
)
from app.credentials.crypto import new_key
from app.errors import NotFound
from app.models import StoredCredential, Workflow, make_engine, make_session_factory
from app.models.migrate import upgrade

OLD_KEY, NEW_KEY = new_key(), new_key()
SECRET = "crm-token-that-must-stay-secret"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'credentials.db'}"
    upgrade(url)
    return url


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    with factory.begin() as session:
        create_agent(session, agent_id="seller", agent_name="Seller", llm_config=LLMConfig())
        session.add(Workflow(workflow_id="leads", agent_id="seller", workflow_json={}))
    yield factory
    engine.dispose()


def settings(*keys: str) -> Settings:
    return Settings(encryption_key=",".join(keys))


def put(
    sessions: sessionmaker[Session], keys: Settings, owner: str, owner_id: str, value: object
) -> None:
    with sessions.begin() as session:
        put_credential(session, cipher_for(keys), owner, owner_id, "crm", value)  # type: ignore[arg-type]


def find(
    sessions: sessionmaker[Session], keys: Settings, agent_id: str | None = "seller"
) -> object:
    with sessions() as session:
        found = find_credential(
            session, cipher_for(keys), "crm", workflow_id="leads", agent_id=agent_id
        )
    return None if found is None else found.value


def test_only_the_ciphertext_is_stored(sessions: sessionmaker[Session]) -> None:
    put(sessions, settings(OLD_KEY), "workflow", "leads", SECRET)
    with sessions() as session:
        [row] = session.scalars(select(StoredCredential)).all()
    assert SECRET not in row.ciphertext
    assert find(sessions, settings(OLD_KEY)) == SECRET


def test_objects_of_strings_round_trip(sessions: sessionmaker[Session]) -> None:
    value = {"account_sid": "AC1", "auth_token": SECRET}
    put(sessions, settings(OLD_KEY), "workflow", "leads", value)
    assert find(sessions, settings(OLD_KEY)) == value


def test_the_workflows_credential_wins_over_its_agents(sessions: sessionmaker[Session]) -> None:
    keys = settings(OLD_KEY)
    put(sessions, keys, "agent", "seller", "agent-token")
    assert find(sessions, keys) == "agent-token"
    put(sessions, keys, "workflow", "leads", "workflow-token")
    assert find(sessions, keys) == "workflow-token"
    assert find(sessions, keys, agent_id=None) == "workflow-token"


def test_a_credentials_repr_hides_its_value(sessions: sessionmaker[Session]) -> None:
    put(sessions, settings(OLD_KEY), "workflow", "leads", SECRET)
    with sessions() as session:
        found = find_credential(
            session, cipher_for(settings(OLD_KEY)), "crm", workflow_id="leads", agent_id=None
        )
    assert SECRET not in repr(found)


def test_listing_gives_names_and_times_only(sessions: sessionmaker[Session]) -> None:
    put(sessions, settings(OLD_KEY), "workflow", "leads", SECRET)
    with sessions() as session:
        listed = list_credentials(session, "workflow", "leads")
    assert [item["name"] for item in listed] == ["crm"]
    assert SECRET not in repr(listed)
    assert set(listed[0]) == {"name", "owner", "owner_id", "created_at", "updated_at"}


def test_unknown_owners_and_names_are_not_found(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, pytest.raises(NotFound, match="no workflow with id 'x'"):
        put_credential(session, cipher_for(settings(OLD_KEY)), "workflow", "x", "crm", SECRET)
    with sessions.begin() as session, pytest.raises(NotFound, match="no credential 'crm'"):
        delete_credential(session, "agent", "seller", "crm")


def test_deleting_an_agent_deletes_its_credentials(sessions: sessionmaker[Session]) -> None:
    put(sessions, settings(OLD_KEY), "agent", "seller", SECRET)
    with sessions.begin() as session:
        delete_agent(session, "seller")
    with sessions() as session:
        assert session.scalars(select(StoredCredential)).all() == []


def test_keys_rotate_old_ones_still_decrypt_until_rotated(sessions: sessionmaker[Session]) -> None:
    put(sessions, settings(OLD_KEY), "workflow", "leads", SECRET)
    both = settings(NEW_KEY, OLD_KEY)
    assert find(sessions, both) == SECRET  # the old key still decrypts
    with sessions.begin() as session:
        assert rotate_credentials(session, cipher_for(both)) == 1
    assert find(sessions, settings(NEW_KEY)) == SECRET  # the old key may now go
    with pytest.raises(CannotDecrypt, match="credential 'crm' of workflow 'leads'"):
        find(sessions, settings(OLD_KEY))


def test_a_missing_or_malformed_key_is_reported_without_quoting_it() -> None:
    with pytest.raises(EncryptionNotConfigured, match="DUALMCP_ENCRYPTION_KEY is not set"):
        cipher_for(Settings())
    with pytest.raises(EncryptionNotConfigured, match="key 2 of 2 is not a Fernet key") as raised:
        cipher_for(settings(OLD_KEY, "not-a-fernet-key"))
    assert "not-a-fernet-key" not in str(raised.value)
    assert OLD_KEY not in str(raised.value)


def test_the_cli_rotates_every_credential(
    sessions: sessionmaker[Session],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put(sessions, settings(OLD_KEY), "workflow", "leads", SECRET)
    put(sessions, settings(OLD_KEY), "agent", "seller", "agent-secret")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DUALMCP_ENCRYPTION_KEY", f"{NEW_KEY},{OLD_KEY}")
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["keys", "rotate-encryption"]) == 0
    finally:
        get_settings.cache_clear()
    assert "re-encrypted 2 credential(s)" in capsys.readouterr().out
    assert find(sessions, settings(NEW_KEY)) == SECRET


def test_the_cli_changes_nothing_when_a_credential_cannot_be_decrypted(
    sessions: sessionmaker[Session],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put(sessions, settings(OLD_KEY), "workflow", "leads", SECRET)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("DUALMCP_ENCRYPTION_KEY", NEW_KEY)  # the old key dropped too early
    from app.config import get_settings

    get_settings.cache_clear()
    try:
        assert main(["keys", "rotate-encryption"]) == 1
    finally:
        get_settings.cache_clear()
    error = capsys.readouterr().err
    assert "nothing re-encrypted: credential 'crm' of workflow 'leads'" in error
    assert find(sessions, settings(OLD_KEY)) == SECRET


def test_the_cli_makes_new_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "new-encryption-key"]) == 0
    key = capsys.readouterr().out.strip()
    assert cipher_for(settings(key)).decrypt(cipher_for(settings(key)).encrypt(b"x")) == b"x"
