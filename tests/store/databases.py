"""Fresh, empty databases for tests: a SQLite file, or a new PostgreSQL database.

PostgreSQL comes from LABYARD_TEST_POSTGRES_URL (scripts/test sets it from
scripts/postgres.sh). Without it a PostgreSQL test fails: it never silently skips, so CI
cannot go green having tested SQLite only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

POSTGRES_ENV = "LABYARD_TEST_POSTGRES_URL"
KINDS = ["sqlite", "postgresql"]


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.fail(
            f"{POSTGRES_ENV} is not set, so the PostgreSQL tests cannot run. Start one with\n"
            f'  export {POSTGRES_ENV}="$(./scripts/postgres.sh)"\n'
            "(scripts/test does this).",
            pytrace=False,
        )
    return url


@contextmanager
def fresh_database_url(kind: str, tmp_dir: Path) -> Iterator[str]:
    """The URL of an empty database of `kind`, dropped again afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_dir / 'labyard.db'}"
        return
    assert kind == "postgresql", kind
    base = make_url(postgres_base_url())
    name = f"labyard_t_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def upgrade_to(engine: Engine, revision: str) -> None:
    """Bring the schema of `engine`'s database to migration `revision` (or "head")."""
    from alembic import command
    from alembic.config import Config

    from labyard.store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
