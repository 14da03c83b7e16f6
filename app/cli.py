"""The `dualmcp` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from app.config import get_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualmcp", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply every Alembic migration (DATABASE_URL)")
    keys = commands.add_parser("keys", help="API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="store a new API key and print it once")
    create.add_argument("--scope", choices=["admin", "read"], required=True)
    create.add_argument("--name", default="", help="what the key is for")
    standalone = commands.add_parser(
        "standalone", help="web + worker in one process: SQLite, in-memory broker, no services"
    )
    standalone.add_argument("--host", default="127.0.0.1")
    standalone.add_argument("--port", type=int, default=8000)
    standalone.add_argument(
        "--demo", action="store_true", help="create a sample workflow, fire it, print the run"
    )
    args = parser.parse_args(argv)

    if args.command == "db" and args.db_command == "upgrade":
        from app.models.migrate import upgrade

        upgrade(get_settings().database_url)
        print("database is at the latest schema")
        return 0
    if args.command == "keys" and args.keys_command == "create":
        return _create_key(args.scope, args.name)
    if args.command == "standalone":
        from app import standalone as standalone_mode

        standalone_mode.run(host=args.host, port=args.port, demo=args.demo)
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


def _create_key(scope: str, name: str) -> int:
    from app.apikeys import create_key
    from app.models import make_engine, make_session_factory

    engine = make_engine(get_settings().database_url)
    with make_session_factory(engine).begin() as session:
        key = create_key(session, scope, name)  # type: ignore[arg-type]
    engine.dispose()
    print(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
