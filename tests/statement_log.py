"""Counting what the code sends to PostgreSQL: the tests of the one-statement paths."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event


class StatementLog:
    """The first word of every statement the engines send, and whether it ran in autocommit
    (psycopg sends a BEGIN first otherwise). On autocommit connections no BEGIN or COMMIT goes
    on the wire, so one statement is one round trip."""

    def __init__(self, *engines: Engine) -> None:
        self.statements: list[str] = []
        self.autocommit: list[bool] = []
        for engine in engines:
            event.listen(engine, "before_cursor_execute", self._statement)

    def _statement(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement.split(None, 1)[0].upper())
        self.autocommit.append(conn.connection.dbapi_connection.autocommit)

    def take(self) -> list[str]:
        """The statements so far, and a fresh start."""
        taken, self.statements, self.autocommit = self.statements, [], []
        return taken
