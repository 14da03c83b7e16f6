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
    args = parser.parse_args(argv)

    if args.command == "db" and args.db_command == "upgrade":
        from app.models.migrate import upgrade

        upgrade(get_settings().database_url)
        print("database is at the latest schema")
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
