"""rootnotify on PostgreSQL: `[storage] url` is any SQLAlchemy URL, and the README offers it.

The whole suite runs on SQLite, the embedded default; these tests hold the
PostgreSQL promise on a real server (tests/postgres.py): the migrations make
the models' schema, processes starting together upgrade once, a CA's
notification is stored, acted on and acknowledged, and numbers past 32 bits
(crt.sh ids, IMAP's UIDVALIDITY) are kept.
"""

from __future__ import annotations

import email

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel, select

from bot.operator.views import incident_json
from storage import migrate, models
from storage.db import open_database
from storage.models import (
    OUT_SENT,
    STATE_PROCESSED,
    Certificate,
    ImapState,
    InboundMessage,
    Incident,
    OutboundMessage,
)
from tests.harness import CA_CONTACT, COMPLETE_FORM, eventually, make_mail, running_bot
from tests.postgres import postgres_cluster, postgres_database  # noqa: F401  (fixtures)
from tests.story import notify, send
from tests.test_certificate_list_chunks import gzip_csv
from tests.test_certificate_lists_e2e import list_mail
from tests.together import open_together


def test_the_migrations_make_the_schema_of_the_models_on_postgres(postgres_url):
    db = open_database(postgres_url)
    assert models  # registers every table with SQLModel's metadata
    with db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(
            connection, opts={"compare_type": migrate.same_type}), SQLModel.metadata)
        revision = connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalar()
    db.dispose()
    assert differences == []
    assert revision == migrate.HEAD


def test_processes_starting_together_on_a_new_postgres_database_upgrade_it_once(postgres_url):
    results = open_together(postgres_url)
    assert [(code, said) for code, said, _err in results] == [(0, migrate.HEAD)] * 3, results
    db = open_database(postgres_url)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql(
            "SELECT version_num FROM alembic_version").scalars().all() == [migrate.HEAD]
    db.dispose()


def test_processes_starting_while_another_writes_the_schema_version_all_start(postgres_url):
    """A database at head whose `meta.schema_version` another process is writing right
    now (say, the one that upgraded it): the processes starting meanwhile wait for
    its row and then write theirs over it, none failing on the duplicate key."""
    db = open_database(postgres_url)
    with db.engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM meta WHERE key = 'schema_version'")
    writing = db.engine.connect()
    writing.exec_driver_sql("INSERT INTO meta (key, value) VALUES ('schema_version', '0')")

    def waiting_on_that_row() -> int:
        with db.engine.connect() as watching:
            return int(watching.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'").scalar_one())

    def commit_once_all_wait() -> None:
        eventually("the starting processes to wait on the row being written",
                   lambda: waiting_on_that_row() == 3)
        writing.commit()
        writing.close()

    results = open_together(postgres_url, meanwhile=commit_once_all_wait)
    assert [(code, said) for code, said, _err in results] == [(0, migrate.HEAD)] * 3, results
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql(
            "SELECT value FROM meta WHERE key = 'schema_version'").scalars().all() == [
            str(int(migrate.HEAD))]
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


def test_a_certificate_list_with_real_crtsh_ids_is_stored_on_postgres(tmp_path, postgres_url):
    """crt.sh ids are past 2**31: PostgreSQL's INTEGER refused the whole list."""
    with running_bot(tmp_path, storage_url=postgres_url) as (bot, sink):
        incident = notify(bot, sink)
        send(bot, list_mail(incident, "misissued.csv.gz", "application/gzip", gzip_csv(300)))
        sink.wait_for(sink.to(CA_CONTACT, "Certificate list recorded"))

        def stored() -> list[int | None]:
            with bot.ctx.db.read() as session:
                return list(session.exec(select(Certificate.crtsh_id)))

        eventually("the list's 300 certificates", lambda: len(stored()) == 300)
        assert max(i or 0 for i in stored()) == 9_000_000_299


def test_imap_state_keeps_a_uidvalidity_past_31_bits_on_postgres(postgres_url):
    """RFC 3501's UIDVALIDITY and UIDs are unsigned 32-bit numbers."""
    db = open_database(postgres_url)
    with db.write() as session:
        session.add(ImapState(folder="INBOX", uidvalidity=4_294_967_295, last_uid=3_000_000_000))
    with db.read() as session:
        state = session.get(ImapState, "INBOX")
        assert state is not None
        assert (state.uidvalidity, state.last_uid) == (4_294_967_295, 3_000_000_000)
    db.dispose()


def test_a_mail_with_nul_bytes_is_recorded_on_postgres(tmp_path, postgres_url):
    """PostgreSQL refuses NUL in text; mail may not hold it, hostile mail does
    (the fuzz test found it): it is read as U+FFFD and the message is processed."""
    with running_bot(tmp_path, storage_url=postgres_url) as (bot, sink):
        raw = make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM)
        raw = raw.replace(b"Subject: Security incident", b"Subject: Security\x00incident")
        assert bot.send(raw) == {}
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"))[0]
        assert ack.subject.startswith("[INC-2026-0001] ")
        with bot.ctx.db.read() as session:
            [row] = session.exec(select(InboundMessage))
        assert row.state == STATE_PROCESSED and row.subject == \
            "Security\ufffdincident notification"


def test_the_demo_maildir_outbox_works_with_postgres_storage(tmp_path, postgres_url):
    """With SQLite the database file made data_dir; with PostgreSQL nothing did, and
    the maildir outbox could not be created under it."""
    with running_bot(tmp_path, storage_url=postgres_url, outgoing_mode="maildir") as (bot, _):
        bot.send(make_mail(CA_CONTACT, "Security incident notification", COMPLETE_FORM))
        outbox = bot.ctx.config.bot.data_dir / "outbox" / "new"
        eventually("the acknowledgement in the maildir",
                   lambda: outbox.exists() and any(
                       b"Notification received" in path.read_bytes()
                       for path in outbox.iterdir()))
        mails = [email.message_from_bytes(p.read_bytes()) for p in outbox.iterdir()]
        [ack] = [m for m in mails if "Notification received" in m["Subject"]]
        assert ack["Subject"].startswith("[INC-2026-0001] Notification received")
        assert ack["To"] == CA_CONTACT
        with bot.ctx.db.read() as session:
            row = session.exec(select(OutboundMessage).where(
                OutboundMessage.message_id == ack["Message-ID"])).one()
        assert (row.kind, row.status) == ("acknowledgement", OUT_SENT)
