"""The schema comes from Alembic migrations (storage.migrate): what an operator upgrading sees.

A model changed without a migration, an old database that is not adopted, a
newer database opened by an older rootnotify: each would lose or corrupt
mail at an upgrade, so each is checked here on real SQLite files.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from storage import migrate, models
from storage.db import SchemaTooNew, open_database
from tests.together import open_together

ROOT = Path(__file__).resolve().parents[1]


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _rows(path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(query).fetchall()


def test_the_head_known_without_alembic_is_the_newest_revision_file():
    """A new revision must move storage.migrate.HEAD, or databases would stay behind."""
    assert migrate._scripts().get_current_head() == migrate.HEAD


def test_the_migrations_make_exactly_the_schema_of_the_models(tmp_path):
    """A model changed without its migration fails here, not at an operator's upgrade."""
    db = open_database(_url(tmp_path / "fresh.db"))
    assert models  # registers every table with SQLModel's metadata
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(
            connection, opts={"compare_type": migrate.same_type}), SQLModel.metadata)
    db.dispose()
    assert differences == []
    assert _rows(tmp_path / "fresh.db", "SELECT version_num FROM alembic_version") == [
        (migrate.head(),)]


def _database_from_before_migrations(path: Path) -> None:
    """What rootnotify made before it had migrations: revision 0001's tables, no
    alembic_version, and meta.schema_version 1."""
    engine = sa.create_engine(_url(path))
    with engine.begin() as connection:
        config = migrate._config(connection)
        command.upgrade(config, migrate.FIRST_REVISION)
        connection.exec_driver_sql("DROP TABLE alembic_version")
        connection.exec_driver_sql(
            "INSERT INTO meta (key, value) VALUES ('schema_version', '1'), "
            "('scheduler_last_run', '2026-11-26T12:00:00+00:00')")
        connection.exec_driver_sql(
            "INSERT INTO outbound_message (message_id, kind, envelope_from, recipients, "
            "subject, data, status, attempts, created_at) VALUES ('<sent@program.test>', "
            "'acknowledgement', 'rootnotify@program.test', 'a@ca.test,b@ca.test', 'ack', "
            "x'00', 'sent', 1, '2026-11-26 12:00:00.000000')")
    engine.dispose()


def test_a_database_from_before_migrations_is_adopted_with_what_it_holds(tmp_path):
    path = tmp_path / "old.db"
    _database_from_before_migrations(path)
    open_database(_url(path)).dispose()
    assert _rows(path, "SELECT version_num FROM alembic_version") == [(migrate.head(),)]
    assert dict(_rows(path, "SELECT key, value FROM meta")) == {
        "schema_version": str(int(migrate.head())),
        "scheduler_last_run": "2026-11-26T12:00:00+00:00"}
    assert _rows(path, "SELECT message_id, status, recipients, failed_recipients, "
                       "retry_recipients FROM outbound_message") == [
        ("<sent@program.test>", "sent", "a@ca.test,b@ca.test", None, None)]


def test_a_database_of_a_newer_rootnotify_is_refused_untouched(tmp_path):
    path = tmp_path / "newer.db"
    open_database(_url(path)).dispose()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999'")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew, match=r"revision 9999, which this rootnotify does not "
                                           r"know .*upgrade rootnotify"):
        open_database(_url(path))
    assert path.read_bytes() == before


def test_processes_starting_together_on_a_new_database_all_find_it_ready(tmp_path):
    """`serve` starts three processes at once; on an empty database one creates the
    schema and the others, let in after it, find it at head."""
    url = _url(tmp_path / "together.db")
    results = open_together(url)
    assert [(code, said) for code, said, _err in results] == [(0, migrate.head())] * 3, results
    assert _rows(tmp_path / "together.db", "SELECT version_num FROM alembic_version") == [
        (migrate.head(),)]


FAILING_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "{revision}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_message") as batch_op:
        batch_op.add_column(sa.Column("doomed", sa.String(), nullable=True))
    op.create_table("doomed_table", sa.Column("id", sa.Integer(), primary_key=True))
    raise RuntimeError("this migration fails half-way")


def downgrade() -> None:
    pass
'''


@pytest.fixture
def failing_next_revision(tmp_path, monkeypatch):
    """This rootnotify's migrations and one more after them that fails half-way."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts,
                    ignore=shutil.ignore_patterns("__pycache__"))
    current = migrate.head()
    following = f"{int(current) + 1:04d}"
    (scripts / "versions" / f"{following}_fails.py").write_text(
        FAILING_REVISION.format(revision=following, down=current))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scripts)
    monkeypatch.setattr(migrate, "HEAD", following)
    migrate._scripts.cache_clear()
    yield current, following
    migrate._scripts.cache_clear()  # after monkeypatch's undo: the real scripts again


def test_an_upgrade_that_fails_half_way_leaves_the_database_as_it_was(tmp_path,
                                                                      failing_next_revision):
    today, failing = failing_next_revision
    path = tmp_path / "kept.db"
    with pytest.MonkeyPatch.context() as now:  # the database as today's rootnotify left it
        now.setattr(migrate, "MIGRATIONS_DIR", ROOT / "storage" / "migrations")
        now.setattr(migrate, "HEAD", today)
        migrate._scripts.cache_clear()
        open_database(_url(path)).dispose()
    migrate._scripts.cache_clear()
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
    assert migrate._scripts().get_current_head() == failing

    with pytest.raises(RuntimeError, match="fails half-way"):
        open_database(_url(path))

    assert _rows(path, "SELECT version_num FROM alembic_version") == [(today,)]
    assert ("kept", "yes") in _rows(path, "SELECT key, value FROM meta")
    columns = [row[1] for row in _rows(path, "PRAGMA table_info(outbound_message)")]
    assert "doomed" not in columns
    assert not _rows(path, "SELECT name FROM sqlite_master WHERE name = 'doomed_table'")
