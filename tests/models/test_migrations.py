"""The Alembic migrations build exactly the schema the models describe, on both backends."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.models import Base
from app.models.migrate import downgrade, upgrade


def _differences(url: str) -> list:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()


def test_migrations_match_the_models_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade(url)
    assert _differences(url) == []


def test_migrations_downgrade_to_an_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade(url)
    downgrade(url, "base")
    engine = sqlalchemy.create_engine(url)
    tables = set(sqlalchemy.inspect(engine).get_table_names())
    engine.dispose()
    assert tables == {"alembic_version"}


def test_migrations_match_the_models_on_postgresql(migrated_postgres: str) -> None:
    assert _differences(migrated_postgres) == []
