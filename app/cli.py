"""The `dualmcp` command.

Each command imports what it needs when it runs, not at the top: `dualmcp healthcheck` runs every
30 s in every container and must not load the whole app (nor app.metrics before it has cleared
PROMETHEUS_MULTIPROC_DIR).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from app.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualmcp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply every Alembic migration (DATABASE_URL)")
    keys = commands.add_parser("keys", help="API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="store a new API key and print it once")
    create.add_argument("--scope", choices=["admin", "invoke", "read"], required=True)
    create.add_argument("--name", default="", help="what the key is for")
    keys_commands.add_parser(
        "list", help="the stored keys: id, scope, name, created (never the keys themselves)"
    )
    revoke = keys_commands.add_parser("revoke", help="delete a stored key; it stops working")
    revoke.add_argument("key", help="its id from `dualmcp keys list`, or the key itself")
    keys_commands.add_parser(
        "new-encryption-key", help="print a new Fernet key for DUALMCP_ENCRYPTION_KEY"
    )
    keys_commands.add_parser(
        "rotate-encryption",
        help="re-encrypt every stored credential with the first key of DUALMCP_ENCRYPTION_KEY",
    )
    standalone = commands.add_parser(
        "standalone", help="web + worker in one process: SQLite, in-memory broker, no services"
    )
    standalone.add_argument("--host", default="127.0.0.1")
    standalone.add_argument("--port", type=int, default=8000)
    standalone.add_argument(
        "--demo", action="store_true", help="create a sample workflow, fire it, print the run"
    )
    health = commands.add_parser(
        "healthcheck", help="exit 0 when this container's process is healthy (the HEALTHCHECK)"
    )
    health.add_argument(
        "--role",
        choices=["web", "worker", "beat"],
        default=os.environ.get("DUALMCP_ROLE", "web"),
        help="what the container runs (default: DUALMCP_ROLE, else web)",
    )
    health.add_argument("--port", type=int, default=8000, help="the web's port")
    args = parser.parse_args(argv)

    if args.command == "db" and args.db_command == "upgrade":
        from app.models.migrate import upgrade

        upgrade(get_settings().database_url)
        print("database is at the latest schema")
        return 0
    if args.command == "keys" and args.keys_command == "create":
        return _create_key(args.scope, args.name)
    if args.command == "keys" and args.keys_command == "list":
        return _list_keys()
    if args.command == "keys" and args.keys_command == "revoke":
        return _revoke_key(args.key)
    if args.command == "keys" and args.keys_command == "new-encryption-key":
        from app.credentials.crypto import new_key

        print(new_key())
        return 0
    if args.command == "keys" and args.keys_command == "rotate-encryption":
        return _rotate_encryption()
    if args.command == "standalone":
        from app import standalone as standalone_mode

        try:
            standalone_mode.run(host=args.host, port=args.port, demo=args.demo)
        except standalone_mode.PortInUse as exc:
            print(exc, file=sys.stderr)
            return 1
        return 0
    if args.command == "healthcheck":
        # A short-lived process every 30 s: its metric files would pile up in the directory.
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        from app.healthcheck import check

        problem = check(args.role, args.port)
        print(f"{args.role}: {problem or 'healthy'}")
        return 1 if problem else 0
    parser.error(f"unknown command {args.command}")
    return 2


@contextmanager
def _transaction() -> Iterator[Session]:
    """One transaction on DATABASE_URL, for a command that runs once and exits."""
    from app.models import make_engine, make_session_factory

    engine = make_engine(get_settings().database_url)
    try:
        with make_session_factory(engine).begin() as session:
            yield session
    finally:
        engine.dispose()


def _create_key(scope: str, name: str) -> int:
    from app.apikeys import create_key

    with _transaction() as session:
        key = create_key(session, scope, name)  # type: ignore[arg-type]
    print(key)
    return 0


def _list_keys() -> int:
    from app.apikeys import list_keys, parse_env_keys

    with _transaction() as session:
        stored = list_keys(session)
    print(f"{'ID':<14}{'SCOPE':<8}{'CREATED':<27}NAME")
    for key in stored:
        print(f"{key.key_id:<14}{key.scope:<8}{key.created_at.isoformat():<27}{key.name}")
    from_env = len(parse_env_keys(get_settings().api_keys))
    if from_env:
        print(f"(and {from_env} key(s) from DUALMCP_API_KEYS, changed only there)")
    return 0


def _revoke_key(key_or_id: str) -> int:
    from app.apikeys import revoke_key
    from app.errors import Conflict, NotFound

    try:
        with _transaction() as session:
            revoked = revoke_key(session, key_or_id)
    except (NotFound, Conflict) as exc:
        print(f"nothing revoked: {exc}", file=sys.stderr)
        return 1
    named = f", {revoked.name}" if revoked.name else ""
    print(f"revoked {revoked.key_id} ({revoked.scope}{named})")
    return 0


def _rotate_encryption() -> int:
    """All or nothing: one transaction; a credential no key decrypts stops it, named."""
    from app.credentials import (
        CannotDecrypt,
        EncryptionNotConfigured,
        cipher_for,
        rotate_credentials,
    )

    try:
        cipher = cipher_for(get_settings())
        with _transaction() as session:
            count = rotate_credentials(session, cipher)
    except (CannotDecrypt, EncryptionNotConfigured) as exc:
        print(f"nothing re-encrypted: {exc}", file=sys.stderr)
        return 1
    print(f"re-encrypted {count} credential(s) with the first key of DUALMCP_ENCRYPTION_KEY")
    return 0


if __name__ == "__main__":
    sys.exit(main())
