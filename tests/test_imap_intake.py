"""IMAP intake against a real Dovecot: taken in once, moved aside, never lost, never deleted.

Each story runs the whole bot (`Service`, as `serve` does) against a Dovecot
on loopback and a relay sink; mail is put in the mailbox with IMAP APPEND, as
a mail server's delivery would. Faults are real: Dovecot is stopped in the
middle of a batch, the watched folder is deleted and recreated, the bot is
restarted. Waits are bounded; mail is awaited at the sink or by polling the
poller's counters, never by sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlmodel import select

from bot.clock import FixedClock
from bot.config import load_config
from bot.intake.imap import connection as imapconn
from bot.intake.imap.connection import CONNECT_TIMEOUT_SECONDS
from bot.intake.imap.poller import (
    ImapLoginRefused,
    ImapPoller,
    ImapUnavailable,
    check_login,
    connect,
)
from bot.operator.health import health
from bot.service.app import Service
from storage.db import open_database
from storage.models import STATE_STORED, InboundMessage
from tests.dovecot import Dovecot, dovecot_server  # noqa: F401  (the `dovecot` fixture)
from tests.harness import (
    CA_CONTACT,
    STAFF,
    WAIT_SECONDS,
    RunningBot,
    Sink,
    eventually,
    free_port,
    make_mail,
    numbered_form,
    write_config,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
PASSWORD_ENV = "ROOTNOTIFY_IMAP_PASSWORD"
# The contract: with IDLE, new mail is taken in within 10 seconds.
IDLE_PICKUP_SECONDS = 10.0
# How often a bounded wait on server or poller state looks again.


def imap_table(server: Dovecot, *, folder: str = "INBOX", idle: bool = True,
               poll_interval: int = 1, batch_size: int = 50, alert_after: int = 3600,
               starttls: bool = False) -> str:
    port = server.imap_port if starttls else server.imaps_port
    return f"""enabled = true
host = "{server.host}"
port = {port}
ssl = {"false" if starttls else "true"}
starttls = {"true" if starttls else "false"}
username = "{server.user}"
password_env = "{PASSWORD_ENV}"
folder = "{folder}"
processed_folder = "Processed"
poll_interval = {poll_interval}
idle = {"true" if idle else "false"}
batch_size = {batch_size}
alert_after = {alert_after}
ca_file = "{server.cert}"
"""


@contextmanager
def imap_bot(tmp_path: Path, server: Dovecot, sink: Sink, **imap_kw: object
             ) -> Iterator[tuple[RunningBot, ImapPoller]]:
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port,
                        imap=imap_table(server, **imap_kw))  # type: ignore[arg-type]
    bot = RunningBot(load_config(path), FixedClock(NOW)).start()
    try:
        poller = bot.service._imap
        assert isinstance(poller, ImapPoller)
        yield bot, poller
    finally:
        bot.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-imap")


def form(n: int) -> bytes:
    return make_mail(CA_CONTACT, f"Security incident notification {n}", numbered_form(n),
                     message_id=f"<form-{n}@exampleca.test>")


def plain(n: int) -> bytes:
    """A mail from a stranger: quarantined, answered with nothing; cheap to process."""
    return make_mail("someone@elsewhere.test", f"hello {n}", f"message number {n}\n",
                     message_id=f"<plain-{n}@elsewhere.test>")


def acks(sink: Sink) -> list[str]:
    return [r.subject for r in sink.received
            if CA_CONTACT in r.recipients and "Notification received" in r.subject]


def message_ids(raws: list[bytes]) -> list[str]:
    return [str(message_from_bytes(r)["Message-ID"]) for r in raws]


def inbound(bot: RunningBot) -> list[InboundMessage]:
    with bot.ctx.db.read() as session:
        return list(session.exec(select(InboundMessage)))


def test_ca_form_in_the_mailbox_is_acknowledged_and_moved_to_processed(tmp_path, dovecot, sink):
    with imap_bot(tmp_path, dovecot, sink) as (bot, poller):
        eventually("the first poll", lambda: poller.failures == 0 and
                   health(bot.ctx)["imap"].get("INBOX", {}).get("last_success_at") is not None)
        # Appended after the bot is idling: IDLE must pick it up within seconds.
        raw = form(1)
        dovecot.append(raw, when=NOW)
        ack = sink.wait_for(sink.to(CA_CONTACT, "Notification received"),
                            timeout=IDLE_PICKUP_SECONDS)[0]
        assert ack.subject.startswith("[INC-2026-0001] ")
        assert "met (received within 24 hours)" in ack.body  # INTERNALDATE is the receipt

        eventually("the move and its UID recorded",
                   lambda: health(bot.ctx)["imap"]["INBOX"]["last_uid"] == 1)
        assert poller.moved == 1 and dovecot.count("INBOX") == 0
        kept = dovecot.messages("Processed")  # created by the bot; the mail is intact
        assert len(kept) == 1 and kept[0].replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")

        status = health(bot.ctx)["imap"]["INBOX"]
        assert status["last_success_at"] == "2026-11-26T12:00:00+00:00"
        assert status["last_error"] is None
        assert status["last_uid"] == 1
        rows = inbound(bot)
        assert [(r.channel, r.received_at.replace(tzinfo=UTC)) for r in rows] == [("imap", NOW)]


def test_mail_that_arrives_between_the_pass_and_idle_is_taken_at_once(tmp_path, dovecot,
                                                                       sink):
    """Dovecot answers IDLE with "+ idling" and, in the same packet, the EXISTS
    of mail that came after the pass's SEARCH. Both land in imaplib's read
    buffer, where polling the socket cannot see the second line: without a
    look at that buffer the mail waited for the next keep-alive (minutes)."""
    with imap_bot(tmp_path, dovecot, sink) as (bot, poller):
        eventually("the first poll", lambda: health(bot.ctx)["imap"].get("INBOX", {})
                   .get("last_success_at") is not None)
        real_idle = poller._idle
        arrived = threading.Event()

        def mail_comes_just_before_idle(client, stop):  # type: ignore[no-untyped-def]
            if not arrived.is_set():
                dovecot.append(form(1))
                arrived.set()
            real_idle(client, stop)

        poller._idle = mail_comes_just_before_idle  # type: ignore[method-assign]
        # Let the idling pass end (renewal comes after minutes; a new pass now).
        dovecot.append(plain(1))
        assert arrived.wait(WAIT_SECONDS)
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"),
                      timeout=IDLE_PICKUP_SECONDS)


def test_a_restart_processes_nothing_twice(tmp_path, dovecot, sink):
    dovecot.append_many([form(1), form(2)])
    with imap_bot(tmp_path, dovecot, sink) as (_bot, poller):
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"), count=2)
        eventually("both moved", lambda: poller.moved == 2)

    # While the bot is down: one new form, and the two old ones back in the
    # inbox as if the bot had died between storing them and moving them.
    with dovecot.client() as c:
        c.select_folder("Processed")
        c.copy(c.search("ALL"), "INBOX")
    dovecot.append(form(3))

    with imap_bot(tmp_path, dovecot, sink) as (bot, poller):
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"), count=3)
        eventually("all three moved", lambda: poller.moved == 3)
        assert (poller.stored, poller.duplicates) == (1, 2)
    assert len(acks(sink)) == 3  # after the stop flushed the pipeline and the outbox
    assert sorted(a.split("]")[0] for a in acks(sink)) == [
        "[INC-2026-0001", "[INC-2026-0002", "[INC-2026-0003"]
    assert len(inbound(bot)) == 3
    assert dovecot.count("INBOX") == 0


def test_dovecot_stopped_and_started_mid_batch_loses_and_repeats_nothing(tmp_path, dovecot,
                                                                          sink):
    total = 120
    raws = [plain(n) for n in range(total)]
    stopped = False
    with imap_bot(tmp_path, dovecot, sink, batch_size=10) as (bot, poller):
        poller.backoff_first = 0.2  # a fast retry keeps the test short; the order is the same
        wake = poller.on_stored

        def on_stored() -> None:
            # The 5th batch (messages 41-50) is committed (perhaps with the 6th:
            # the writer commits what waits together) and not moved yet: the
            # mover only gets it after this. The server dies right here.
            nonlocal stopped
            wake()
            if poller.stored >= 50 and not stopped:
                stopped = True
                dovecot.stop()

        poller.on_stored = on_stored
        # All at once into the watched folder, so the appends are not cut by the fault.
        with dovecot.client() as c:
            c.create_folder("Staging")
            for raw in raws:
                c.append("Staging", raw)
            c.select_folder("Staging")
            c.move(c.search("ALL"), "INBOX")
        eventually("the server to be stopped mid-batch", lambda: stopped)
        eventually("the failure to be seen", lambda: poller.failures >= 1)
        dovecot.start()
        eventually("every message stored", lambda: poller.stored == total, timeout=60)
        eventually("every message moved", lambda: dovecot.count("INBOX") == 0, timeout=60)

    rows = inbound(bot)
    assert len(rows) == total
    assert sorted(r.message_id or "" for r in rows) == sorted(message_ids(raws))
    assert all(r.state != STATE_STORED for r in rows)  # every one processed, once
    processed = message_ids(dovecot.messages("Processed"))
    assert set(processed) == set(message_ids(raws))  # nothing lost, nothing deleted
    # Stored but not moved when the server died: last_uid was committed with
    # them, so after the restart they were moved without being fetched again.
    assert poller.resumed >= 10
    assert poller.duplicates == 0
    print(f"fault test: {total} appended, {len(rows)} stored once, {poller.resumed} "
          f"stored before the fault and moved after it, {len(processed)} in Processed")


def test_recreated_folder_new_uidvalidity_loses_nothing_and_repeats_nothing(tmp_path, dovecot,
                                                                             sink):
    with dovecot.client() as c:
        c.create_folder("Intake")
    dovecot.append_many([form(1), form(2)], folder="Intake")
    with imap_bot(tmp_path, dovecot, sink, folder="Intake") as (bot, poller):
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"), count=2)
        eventually("both moved and the UID recorded",
                   lambda: health(bot.ctx)["imap"]["Intake"]["last_uid"] == 2)
        first = health(bot.ctx)["imap"]["Intake"]

        # The folder is deleted and recreated under the running bot: UIDs start
        # at 1 again, below the stored last_uid. Form 1 comes back, form 3 is new.
        with dovecot.client() as c:
            c.delete_folder("Intake")
            c.create_folder("Intake")
        dovecot.append_many([form(1), form(3)], folder="Intake")

        sink.wait_for(sink.to(CA_CONTACT, "Notification received"), count=3)
        eventually("both moved again", lambda: poller.moved == 4)
        now = health(bot.ctx)["imap"]["Intake"]
        assert now["uidvalidity"] != first["uidvalidity"]
        assert (poller.stored, poller.duplicates) == (3, 1)
    assert len(acks(sink)) == 3
    assert len(inbound(bot)) == 3


def test_the_same_mail_by_smtp_and_by_imap_is_processed_once(tmp_path, dovecot, sink):
    raw = form(1)
    with imap_bot(tmp_path, dovecot, sink) as (bot, poller):
        bot.send(raw)
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        # The IMAP copy carries the delivering server's trace headers.
        dovecot.append(b"Return-Path: <incidents@exampleca.test>\r\n"
                       b"Delivered-To: rootnotify@program.test\r\n" + raw)
        eventually("the IMAP copy to be moved", lambda: poller.moved == 1)
        assert (poller.stored, poller.duplicates) == (0, 1)
    assert len(acks(sink)) == 1
    assert [r.channel for r in inbound(bot)] == ["smtp"]


def test_starttls_and_polling_without_idle_without_move(tmp_path, dovecot, sink):
    with imap_bot(tmp_path, dovecot, sink, starttls=True, idle=False, poll_interval=1) as (
            _bot, poller):
        poller.use_move = False  # COPY + \Deleted + UID EXPUNGE of exactly our UIDs
        with dovecot.client() as c:
            # Someone else's mail flagged \Deleted must survive our expunge.
            c.append("INBOX", plain(99), flags=[b"\\Deleted"])
        dovecot.append(form(1))
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"))
        eventually("the move", lambda: poller.moved == 2)
    assert message_ids(dovecot.messages("Processed")) == [
        "<plain-99@elsewhere.test>", "<form-1@exampleca.test>"]
    assert dovecot.count("INBOX") == 0


def test_wrong_password_is_a_clear_error_at_start(tmp_path, dovecot, sink, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port,
                        imap=imap_table(dovecot))
    config = load_config(path)
    with pytest.raises(ImapLoginRefused) as refused:
        check_login(config.imap)
    text = str(refused.value)
    assert "login refused" in text and PASSWORD_ENV in text and dovecot.user in text

    service = Service(config, FixedClock(NOW))
    with pytest.raises(ImapLoginRefused):
        asyncio.run(service.start())
    service.db.dispose()

    monkeypatch.setenv(PASSWORD_ENV, dovecot.password)
    found = check_login(load_config(path).imap)
    assert found.idle and found.move and found.folder_exists


def test_an_unreachable_server_backs_off_records_the_error_and_alerts_staff_once(
        tmp_path, dovecot, sink, caplog):
    caplog.set_level(logging.INFO, logger="rootnotify")
    with imap_bot(tmp_path, dovecot, sink, alert_after=600) as (bot, poller):
        eventually("the first poll", lambda: health(bot.ctx)["imap"].get("INBOX", {})
                   .get("last_success_at") is not None)
        poller.backoff_first, poller.backoff_max = 0.1, 0.2
        dovecot.stop()
        # The first failures are the dropped connections (the fetching one and,
        # when a pass was moving, the mover's); the next ones are refusals.
        eventually("a refused reconnection", lambda: poller.failures >= 2 and "connection "
                   "refused" in (health(bot.ctx)["imap"]["INBOX"]["last_error"] or ""))

        bot.clock.advance(seconds=601)  # no successful poll for longer than alert_after
        eventually("several failures", lambda: poller.failures >= 4)
        alerts = sink.wait_for(sink.to(STAFF, "IMAP intake failing"))
        assert "no successful IMAP poll recently" in health(bot.ctx)["needs_attention"]
        eventually("more failures", lambda: poller.failures >= 8)

        dovecot.start()
        dovecot.append(form(1))
        # A reconnection made while Dovecot starts can be accepted and then wait
        # for the greeting (seen once in CI) until the connect timeout; the
        # poller then reconnects, so allow for that wait.
        sink.wait_for(sink.to(CA_CONTACT, "Notification received"),
                      timeout=CONNECT_TIMEOUT_SECONDS + WAIT_SECONDS)
        eventually("the error to be cleared",
                   lambda: health(bot.ctx)["imap"]["INBOX"]["last_error"] is None)
    assert len([r for r in sink.received if "IMAP intake failing" in r.subject]) == 1
    assert "connection refused" in alerts[0].body


def test_a_server_that_never_greets_is_given_up_on_at_the_connect_timeout(
        tmp_path, sink, monkeypatch):
    monkeypatch.setattr(imapconn, "CONNECT_TIMEOUT_SECONDS", 0.5)
    with socket.socket() as silent:  # the kernel accepts; nobody ever speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        cfg = load_config(write_config(
            tmp_path, smtp_port=free_port(), relay_port=sink.port,
            imap=f'enabled = true\nport = {silent.getsockname()[1]}\n'
                 f'password_env = "{PASSWORD_ENV}"')).imap
        with pytest.raises(ImapUnavailable, match="no answer in time"):
            connect(cfg)


def test_unreachable_server_at_start_only_warns(tmp_path, sink):
    port = free_port()  # nobody listens there
    cfg = load_config(write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port,
                                   imap=f'enabled = true\nport = {port}\n'
                                        f'password_env = "{PASSWORD_ENV}"')).imap
    with pytest.raises(ImapUnavailable, match="connection refused"):
        check_login(cfg)


def test_a_10000_message_folder_is_taken_in_batches_and_never_fetched_twice(tmp_path, dovecot,
                                                                            sink):
    total, batch_size = 10_000, 100
    with dovecot.client() as c:
        for start in range(0, total, 500):  # MULTIAPPEND: one command per 500 messages
            c.multiappend("INBOX", [plain(n) for n in range(start, start + 500)])
    path = write_config(tmp_path, smtp_port=free_port(), relay_port=sink.port,
                        imap=imap_table(dovecot, batch_size=batch_size))
    config = load_config(path)
    db = open_database(config.storage_url)
    poller = ImapPoller(config, db, FixedClock(NOW))
    stop = threading.Event()
    halfway = total // 2

    stopped_once = threading.Event()

    def stop_halfway() -> None:  # the bot is stopped in the middle of the import, once
        if poller.stored >= halfway and not stopped_once.is_set():
            stopped_once.set()
            stop.set()

    poller.on_stored = stop_halfway
    fetched: list[list[int]] = []  # the UIDs of every body fetch
    fetch = poller._fetch_start  # every body FETCH is sent here, pipelined or not

    def counting_fetch(client, uids):  # type: ignore[no-untyped-def]
        fetched.append(list(uids))
        return fetch(client, uids)

    poller._fetch_start = counting_fetch  # type: ignore[method-assign]
    for _run in range(3):  # stopped halfway; the rest; then nothing is left
        client = connect(config.imap)
        poller._ensure_folder(client, config.imap.processed_folder)
        poller.poll_once(client, stop)
        client.logout()
        stop.clear()
    db.dispose()

    uids = [u for batch in fetched for u in batch]
    assert max(len(batch) for batch in fetched) <= batch_size  # never the folder in memory
    assert len(uids) == len(set(uids)) == total  # no UID fetched twice
    assert (poller.stored, poller.duplicates) == (total, 0)
    assert dovecot.count("INBOX") == 0 and dovecot.count("Processed") == total
