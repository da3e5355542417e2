"""rootnotify on PostgreSQL: `[storage] url` is any SQLAlchemy URL, and the README offers it.

The whole suite runs on SQLite, the embedded default; these tests hold the
PostgreSQL promise on a real server (tests/postgres.py): the migrations make
the models' schema, processes starting together upgrade once, and a CA's
notification is stored, acted on and acknowledged.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel, select

from bot.views import incident_json
from storage import migrate, models
from storage.db import open_database
from storage.models import OUT_SENT, Incident, OutboundMessage
from tests.harness import CA_CONTACT, COMPLETE_FORM, eventually, make_mail, running_bot
from tests.postgres import postgres_cluster, postgres_database  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]


def test_the_migrations_make_the_schema_of_the_models_on_postgres(postgres_url):
    db = open_database(postgres_url)
    assert models  # registers every table with SQLModel's metadata
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(
            connection, opts={"compare_type": True}), SQLModel.metadata)
        revision = connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalar()
    db.dispose()
    assert differences == []
    assert revision == migrate.HEAD


OPEN = """
import sys
from storage.db import open_database
open_database(sys.argv[1]).dispose()
"""


def test_processes_starting_together_on_a_new_postgres_database_upgrade_it_once(postgres_url):
    starts = [subprocess.Popen([sys.executable, "-c", OPEN, postgres_url], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for _ in range(3)]
    results = [process.communicate(timeout=60) for process in starts]
    assert [process.returncode for process in starts] == [0, 0, 0], results
    db = open_database(postgres_url)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalars().all() == [migrate.HEAD]
    db.dispose()


def test_a_notification_is_stored_acted_on_and_acknowledged_on_postgres(tmp_path, postgres_url):
    with running_bot(tmp_path, storage_url=postgres_url) as (bot, sink):
        assert bot.send(make_mail(CA_CONTACT, "Security incident notification",
                                  COMPLETE_FORM)) == {}
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert ack.subject.startswith("[INC-2026-0001] ")
        with bot.ctx.db.read() as session:
            incident = session.get(Incident, "INC-2026-0001")
            assert incident is not None
            shown = incident_json(session, incident, bot.clock.now())
        assert shown["id"] == "INC-2026-0001" and shown["ca"] == "Example CA"

        def acknowledgement() -> OutboundMessage:
            with bot.ctx.db.read() as session:
                return session.exec(select(OutboundMessage).where(
                    OutboundMessage.kind == "acknowledgement")).one()

        eventually("the acknowledgement marked sent",
                   lambda: acknowledgement().status == OUT_SENT)
        assert acknowledgement().message_id == ack.message["Message-ID"]
