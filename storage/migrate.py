"""The database schema, brought to this rootnotify's revision by Alembic at every start.

`storage/migrations/versions` holds one file per schema change; the newest
is "head". Opening a database:

- new and empty: every revision runs, creating the tables;
- made before rootnotify had migrations (tables, no `alembic_version`): it is
  revision 0001, stamped so, then upgraded;
- at an older revision: upgraded, in one transaction (SQLite and PostgreSQL
  both roll DDL back), so a failed upgrade leaves the database as it was;
- at a revision this rootnotify does not know: refused (`SchemaTooNew`), as
  a newer rootnotify made it.

The look at the revision is a read of one row, without Alembic (importing it
costs every command ~0.1 s), so `status` is quick and works on a database it
may not write. An upgrade is a write transaction holding a lock (on SQLite BEGIN
IMMEDIATE, on PostgreSQL an advisory lock), so of `serve`'s processes
starting together one upgrades and the others, let in after it, find the
schema at head.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

log = logging.getLogger("rootnotify.storage")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# The newest file in migrations/versions, known without loading Alembic;
# tests/test_migrations.py fails when a new revision does not move it.
HEAD = "0009"
# What a database made before migrations is (storage/migrations/versions/0001_*).
FIRST_REVISION = "0001"
# A table every rootnotify schema has had: its presence without Alembic's
# table means a database from before migrations.
ALWAYS_THERE = "inbound_message"
# PostgreSQL advisory lock taken for an upgrade ("rnmg" in ASCII).
UPGRADE_LOCK_KEY = 0x726E6D67


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer rootnotify than this one."""


def same_type(context: Any, inspected_column: Any, metadata_column: Any,
              inspected_type: sa.types.TypeEngine[Any], metadata_type: sa.types.TypeEngine[Any]
              ) -> bool | None:
    """Alembic's type comparison, but INTEGER and BIGINT are one type on SQLite.

    SQLite stores every integer in up to 64 bits whatever the column says;
    revision 0003 widens columns only where the type means something.
    None: Alembic's own comparison decides.
    """
    integers = (sa.Integer, sa.BigInteger)
    if context.dialect.name == "sqlite" and isinstance(inspected_type, integers) \
            and isinstance(metadata_type, integers):
        return False
    return None


def _config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


@cache
def _scripts() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    """This rootnotify's newest schema revision."""
    return HEAD


def revision_of(connection: Connection) -> tuple[str | None, bool]:
    """The database's revision (None when empty) and whether Alembic recorded it.

    A database from before migrations has revision FIRST_REVISION, unrecorded.
    """
    tables = sa.inspect(connection)
    if tables.has_table("alembic_version"):
        recorded = connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalar()
        if recorded is not None:
            return str(recorded), True
    if tables.has_table(ALWAYS_THERE):
        return FIRST_REVISION, False
    return None, False


def _check_known(current: str | None) -> None:
    if current is None or current == HEAD:
        return
    try:
        _scripts().get_revision(current)
    except Exception:  # alembic raises several kinds for an unknown id
        raise SchemaTooNew(
            f"the database is at schema revision {current}, which this rootnotify does not "
            f"know (its newest is {HEAD}): a newer rootnotify made it; upgrade rootnotify"
        ) from None


def upgrade(engine: Engine, read_engine: Engine | None = None) -> None:
    """Bring the database at `engine` to `HEAD`; see the module docstring."""
    with (read_engine or engine).connect() as connection:
        current, recorded = revision_of(connection)
        connection.rollback()
    if (current, recorded) == (HEAD, True):
        return
    _check_known(current)
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # What BEGIN IMMEDIATE is on SQLite: one process at a time, until commit.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({UPGRADE_LOCK_KEY})")
        # Another process may have upgraded it meanwhile.
        current, recorded = revision_of(connection)
        _check_known(current)
        if (current, recorded) == (HEAD, True):
            return
        config = _config(connection)
        if current is not None and not recorded:
            command.stamp(config, current)
        log.info("upgrading the database schema from revision %s to %s",
                 current or "(empty)", HEAD)
        command.upgrade(config, "head")


def new_revision(message: str) -> Path:
    """Write the next revision file from the difference between the models and head.

    For developers after changing storage/models.py: `python -m storage.migrate
    "what changed"`. Compares against a scratch SQLite database at head;
    read the file it writes before committing it (Alembic cannot see renames).
    """
    import tempfile

    from alembic import command

    from storage import models

    assert models  # the import registers every table with SQLModel's metadata
    with tempfile.TemporaryDirectory() as scratch:
        engine = sa.create_engine(f"sqlite:///{scratch}/head.db")
        with engine.begin() as connection:
            config = _config(connection)
            command.upgrade(config, "head")
            number = f"{int(_scripts().get_current_head() or 0) + 1:04d}"
            script = command.revision(config, message=message, autogenerate=True,
                                      rev_id=number)
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 2:
        sys.exit('usage: python -m storage.migrate "what changed in storage/models.py"')
    written = new_revision(sys.argv[1])
    print(f"{written}\nread it, then set HEAD = \"{written.name[:4]}\" in {__file__}")
