"""Several hosts on one database: spool positions per host, claims, incident numbers, nodes.

The claim and the counter are raced by two real connections to a real
PostgreSQL (tests/postgres.py); the second one's wait is observed in the
server's own view of its locks (pg_stat_activity), not guessed with a sleep.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from bot import node as nodes
from bot.clock import FixedClock
from bot.node import NodeIdentity
from bot.operator.health import health
from storage import spool
from storage.claims import claim_messages
from storage.counters import take_incident_number
from storage.db import open_database
from storage.rawstore import store
from tests.harness import WAIT_SECONDS, eventually
from tests.postgres import postgres_cluster, postgres_database  # noqa: F401  (fixtures)
from tests.test_spool import arrival, spool_all, stored_subjects

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_two_hosts_spools_keep_their_own_import_positions(tmp_path):
    db = open_database(f"sqlite:///{tmp_path}/db.sqlite")
    for host, numbers in (("a", range(0, 3)), ("b", range(3, 8))):
        writer = spool.SpoolWriter(tmp_path / host / "spool")
        writer.start()
        asyncio.run(spool_all(writer, [arrival(i) for i in numbers]))
        writer.stop()
    assert spool.import_spool(db, tmp_path / "b" / "spool", "b") == 5
    # Host a comes back after b imported its own: a's spool is still a's.
    assert spool.pending_bytes(db, tmp_path / "a" / "spool", "a") > 0
    assert spool.import_spool(db, tmp_path / "a" / "spool", "a") == 3
    assert sorted(stored_subjects(db)) == sorted(f"<m{i}@exampleca.test>" for i in range(8))
    assert spool.import_spool(db, tmp_path / "a" / "spool", "a") == 0
    assert spool.import_spool(db, tmp_path / "b" / "spool", "b") == 0


def _waiting_on_a_lock(db) -> int:  # type: ignore[no-untyped-def]
    with db.engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()")).scalar_one())


def test_incident_numbers_from_two_connections_take_turns_without_a_gap(postgres_url):
    db = open_database(postgres_url)
    first = Session(db.engine)
    assert take_incident_number(first, 2026) == 1  # the counter row stays locked
    got: list[int] = []
    done = threading.Event()

    def second_host() -> None:
        with Session(db.engine) as session:
            got.append(take_incident_number(session, 2026))
            session.commit()
        done.set()

    racer = threading.Thread(target=second_host)
    racer.start()
    eventually("the second connection waiting for the counter",
               lambda: _waiting_on_a_lock(db) == 1)
    assert not done.is_set()
    first.rollback()  # the first incident's transaction failed: its number is given back
    first.close()
    assert done.wait(WAIT_SECONDS)
    racer.join()
    assert got == [1]
    with Session(db.engine) as session:
        assert take_incident_number(session, 2026) == 2
        assert take_incident_number(session, 2027) == 1
        session.commit()
    db.dispose()


def test_a_message_claimed_on_one_host_is_skipped_by_the_other(postgres_url):
    db = open_database(postgres_url)
    ids = [store(db, arrival(i)).id for i in range(3)]
    one, other = Session(db.engine), Session(db.engine)
    assert sorted(claim_messages(one, ids[:2])) == ids[:2]
    # Not waited for: the other host takes what is free and goes on.
    assert sorted(claim_messages(other, ids)) == [ids[2]]
    other.rollback()
    one.commit()  # the first worker's transaction ends: the rows are free again
    assert sorted(claim_messages(other, ids)) == ids
    other.rollback()
    one.close()
    other.close()
    db.dispose()


def test_status_lists_every_serve_and_exits_for_a_dead_one_with_work_claimed(
        tmp_path, monkeypatch):
    from bot.config import load_config
    from bot.context import make_context
    from tests.harness import free_port, write_config

    config = load_config(write_config(tmp_path, smtp_port=free_port(), relay_port=free_port()))
    db = open_database(config.storage_url)
    clock = FixedClock(AT)
    a1 = NodeIdentity(name="mx1", id="a1", pid=4242)
    a2 = NodeIdentity(name="mx1", id="a2", pid=4242)  # the same pid again, on another start
    b = NodeIdentity(name="mx2", id="b1", pid=77)
    nodes.register(db, a1, clock)
    nodes.register(db, b, clock)
    clock.advance(seconds=2)
    nodes.register(db, a2, clock)
    clock.advance(seconds=10)
    nodes.heartbeat(db, b, clock)
    nodes.stopped(db, a2, clock)
    clock.advance(seconds=nodes.STALE_AFTER.total_seconds() - 5)
    ctx = make_context(config, db, clock)
    report = health(ctx)
    assert report["nodes"] == [
        {"name": "mx1", "pid": 4242, "started_at": "2026-11-26T12:00:00+00:00",
         "last_seen_at": "2026-11-26T12:00:00+00:00", "alive": False},
        {"name": "mx2", "pid": 77, "started_at": "2026-11-26T12:00:00+00:00",
         "last_seen_at": "2026-11-26T12:00:12+00:00", "alive": True},
        {"name": "mx1", "pid": 4242, "started_at": "2026-11-26T12:00:02+00:00",
         "last_seen_at": "2026-11-26T12:00:12+00:00", "alive": False},
    ]
    assert not [n for n in report["needs_attention"] if "node" in n]  # dead, but holds nothing
    monkeypatch.setitem(nodes.WORK_CLAIMS, "outgoing mail(s)",
                        lambda session, node_id: 2 if node_id in ("a1", "a2", "b1") else 0)
    assert [n for n in health(ctx)["needs_attention"] if "node" in n] == [
        "node mx1 (pid 4242) stopped heartbeating at 2026-11-26T12:00:00+00:00 "
        "with work claimed: 2 outgoing mail(s)"]
    clock.advance(seconds=6)  # mx2 missed its beats too
    assert len([n for n in health(ctx)["needs_attention"] if "node" in n]) == 2
    assert timedelta(seconds=nodes.HEARTBEAT_SECONDS) < nodes.STALE_AFTER
    db.dispose()


def test_on_postgres_the_listener_answers_250_after_the_database_commit(tmp_path, postgres_url):
    import smtplib

    from sqlmodel import select

    from bot.config import load_config
    from bot.service.app import Service
    from storage.models import InboundMessage
    from tests.harness import BOT, CA_CONTACT, free_port, make_mail, write_config

    port = free_port()
    config = load_config(write_config(tmp_path, smtp_port=port, relay_port=free_port(),
                                      storage_url=postgres_url))
    raw = make_mail(CA_CONTACT, "Security incident notification", "form",
                    message_id="<pg-250@exampleca.test>")
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # CRLF, as clients send

    async def one_host() -> None:
        intake = Service(config, role="intake")  # no worker: nothing else could store it
        await intake.start()
        try:
            def deliver() -> None:
                with smtplib.SMTP("127.0.0.1", port) as client:
                    client.sendmail(CA_CONTACT, [BOT], raw)

            await asyncio.to_thread(deliver)
            # The host could die now: what it answered 250 for is in the database.
            with intake.db.read() as session:
                rows = session.exec(select(InboundMessage.message_id,
                                           InboundMessage.channel)).all()
            assert [tuple(r) for r in rows] == [("<pg-250@exampleca.test>", "smtp")]
            assert not config.bot.spool_dir.exists()
        finally:
            await intake.stop()
            intake.db.dispose()

    asyncio.run(one_host())


def test_two_workers_on_postgres_make_one_incident_a_message_numbered_without_gaps(
        tmp_path, postgres_url):
    from sqlmodel import select

    from bot.config import load_config
    from bot.context import make_context
    from bot.service.pipeline import process_pending
    from storage.models import STATE_PROCESSED, InboundMessage, Incident, OutboundMessage
    from storage.rawstore import Arrival
    from tests.harness import BOT, CA_CONTACT, free_port, make_mail, numbered_form, write_config

    config = load_config(write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                                      storage_url=postgres_url))
    hosts = [open_database(postgres_url), open_database(postgres_url)]
    count = 24
    for i in range(count):
        store(hosts[0], Arrival(raw=make_mail(CA_CONTACT, "Security incident notification",
                                              numbered_form(i),
                                              message_id=f"<n{i}@exampleca.test>"),
                                channel="smtp", received_at=AT, envelope_from=CA_CONTACT,
                                envelope_to=(BOT,)))
    start = threading.Barrier(2)

    def worker(db) -> None:  # type: ignore[no-untyped-def]
        start.wait()
        process_pending(make_context(config, db, FixedClock(AT + timedelta(minutes=1))))

    racers = [threading.Thread(target=worker, args=(db,)) for db in hosts]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    with hosts[0].read() as session:
        messages = session.exec(select(InboundMessage.state, InboundMessage.incident_id)).all()
        numbers = sorted(session.exec(select(Incident.seq)).all())
        outgoing = session.exec(select(OutboundMessage.incident_id, OutboundMessage.kind)).all()
    assert sorted(state for state, _ in messages) == [STATE_PROCESSED] * count
    assert len({incident for _, incident in messages}) == count  # one incident a message
    assert numbers == list(range(1, count + 1))
    # One acknowledgement to the CA and one alert to staff per incident, nothing twice
    # (a second worker acting on the same message answered it as a re-sent notification).
    assert sorted(tuple(o) for o in outgoing) == sorted(
        (f"INC-2026-{n:04d}", kind) for n in range(1, count + 1)
        for kind in ("acknowledgement", "alert"))
    for db in hosts:
        db.dispose()
