"""Two hosts on one PostgreSQL send each mail once and run the scheduler once.

DESIGN.md, "Several hosts on one PostgreSQL": an outgoing mail is handed to
the relay by one sender, under a lease in the database; a host killed while
the relay has the mail's DATA leaves it to the other once the lease has run
out, sent with the same Message-ID. The scheduler runs on one host at a time
(an advisory lock) and its reminders are idempotent by key anyway. The hosts
here are real processes (`rootnotify serve`, `rootnotify tick`) on a real
PostgreSQL (tests/postgres.py), each with its own configuration and data_dir.
"""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import col, select

from bot.clock import FixedClock, as_utc, iso
from bot.config import load_config
from bot.context import make_context
from bot.decide.incident.reminders import STAGE_ESCALATED, STAGE_OVERDUE
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.outbox.sender import CLAIM_LEASE, _claim
from storage.db import open_database
from storage.leader import scheduler_turn
from storage.models import OUT_QUEUED, OUT_SENT, OutboundMessage, ReminderLog
from tests.harness import (
    BOT,
    CA_CONTACT,
    CA_OTHER_CONTACT,
    COMPLETE_FORM,
    OTHER_STAFF,
    ROOTNOTIFY,
    STAFF,
    WAIT_SECONDS,
    Received,
    Sink,
    SinkHandler,
    eventually,
    free_port,
    make_mail,
    running_bot,
    write_config,
)
from tests.postgres import postgres_cluster, postgres_database  # noqa: F401  (fixtures)
from tests.story import command, notify
from tests.test_supervisor import ServeLog
from tests.together import ROOT, release_together

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DUE_DAY = "2026-11-29"
DUE = datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC)


class HangOnFirstData(SinkHandler):
    """A relay that takes the first mail's DATA and never answers it; later mails get 250."""

    def __init__(self) -> None:
        super().__init__()
        self.hung: list[Received] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        if self.hung:
            return await super().handle_DATA(server, session, envelope)
        with self.cond:
            self.hung.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content))
            self.cond.notify_all()
        await asyncio.Future()  # no answer, ever: the sender waits in its DATA
        return "451 never said"


class HangingSink(Sink):
    def __init__(self) -> None:
        super().__init__()
        self.handler = HangOnFirstData()
        self.controller.handler = self.handler

    def wait_for_hung(self) -> Received:
        with self.handler.cond:
            assert self.handler.cond.wait_for(lambda: bool(self.handler.hung), WAIT_SECONDS), \
                "no mail reached the relay's DATA"
            return self.handler.hung[0]  # type: ignore[attr-defined]


def host_config(tmp_path: Path, name: str, url: str, relay_port: int, **kw: object) -> Path:
    """One host's configuration: its own data_dir and listener, the shared database."""
    folder = tmp_path / name
    folder.mkdir()
    return write_config(folder, smtp_port=free_port(), relay_port=relay_port, storage_url=url,
                        **kw)  # type: ignore[arg-type]


def rootnotify(config: Path, *args: str) -> str:
    done = subprocess.run([*ROOTNOTIFY, "--config", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return " ".join(done.stdout.split())  # the console wraps at its width


def outbox(url: str) -> list[OutboundMessage]:
    db = open_database(url)
    with db.read() as session:
        rows = list(session.exec(select(OutboundMessage).order_by(col(OutboundMessage.id))))
    db.dispose()
    return rows


def test_a_host_killed_in_the_relays_data_has_its_mail_sent_by_the_other_once_with_its_id(
        tmp_path, postgres_url):
    sink = HangingSink().start()
    host_a = host_config(tmp_path, "a", postgres_url, sink.port)
    host_b = host_config(tmp_path, "b", postgres_url, sink.port)
    serve = subprocess.Popen([*ROOTNOTIFY, "--config", str(host_a), "serve"], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log = ServeLog(serve)
    try:
        eventually("host A listening", lambda: log.saw("SMTP listening"))
        port = load_config(host_a).smtp.port
        with smtplib.SMTP("127.0.0.1", port, timeout=WAIT_SECONDS) as smtp:
            assert smtp.sendmail(CA_CONTACT, [BOT], make_mail(
                CA_CONTACT, "Security incident notification", COMPLETE_FORM)) == {}
        hung = sink.wait_for_hung()
        # The whole host dies: serve, its worker and its sender, mid-DATA.
        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait(WAIT_SECONDS)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(WAIT_SECONDS)
    rows = outbox(postgres_url)
    [held] = [r for r in rows if r.message_id == hung.message["Message-ID"]]
    # Claimed by A's sender process, under a lease a little over the relay's timeout.
    assert held.status == OUT_QUEUED and held.attempts == 1
    assert (held.claimed_by or "").split(":")[2] == str(log.pids["sender"])  # node id:host:pid
    lease_end = as_utc(held.lease_until)  # type: ignore[arg-type]
    claimed = [r for r in rows if r.claimed_by == held.claimed_by]

    # Host B before the lease has run out: nothing is sent, the claim is still A's.
    said = rootnotify(host_b, "tick", "--now", iso(lease_end - timedelta(seconds=1)) or "")
    assert "0 sent" in said, said
    assert sink.received == []
    assert [r.claimed_by for r in outbox(postgres_url) if r.id == held.id] == [held.claimed_by]

    # Once it has: B sends every mail A held, the hung one with its Message-ID, once each.
    said = rootnotify(host_b, "tick", "--now", iso(lease_end + timedelta(seconds=1)) or "")
    assert f"{len(claimed)} sent" in said, said
    delivered = Counter(r.message["Message-ID"] for r in sink.received)
    assert delivered == Counter({r.message_id: 1 for r in claimed})
    assert delivered[held.message_id] == 1
    [again] = [r for r in sink.received if r.message["Message-ID"] == held.message_id]
    assert again.data == hung.data and again.recipients == hung.recipients
    after = {r.id: r for r in outbox(postgres_url)}
    assert [(after[r.id].status, after[r.id].claimed_by, after[r.id].attempts)
            for r in claimed] == [(OUT_SENT, None, 2)] * len(claimed)
    sink.stop()


# Everything a tick imports is imported before "ready": the two then reach the
# database within milliseconds of each other, not an import apart.
TICK_WHEN_TOLD = """
import sys
import bot.outbox.sender, bot.service.pipeline  # noqa
import bot.service.scheduler, bot.decide.incident.reminders  # noqa
from bot.cli import app
from bot.config import load_config
from storage.db import open_database
open_database(load_config(sys.argv[1]).storage_url).dispose()
print("ready", flush=True)
sys.stdin.readline()
app(["--config", sys.argv[1], "tick", "--now", sys.argv[2], "--force"])
"""


def test_two_ticks_started_together_on_two_hosts_remind_and_escalate_once(tmp_path,
                                                                        postgres_url):
    staff = (STAFF, OTHER_STAFF)
    with running_bot(tmp_path, at=NOW, storage_url=postgres_url, staff=staff) as (bot, sink):
        inc = notify(bot, sink)
        command(bot, sink, f"/request certificate-list due {DUE_DAY}", inc)
        sink.wait_for(sink.to(CA_CONTACT, "Request"))
        eventually("the outbox sent", lambda: all(
            r.status == OUT_SENT for r in outbox(postgres_url)))
    relay = Sink().start()
    hosts = [host_config(tmp_path, name, postgres_url, relay.port, staff=staff)
             for name in ("a", "b")]
    at = iso(DUE + timedelta(seconds=1)) or ""  # overdue: the CA reminded, staff escalated
    ticks = [subprocess.Popen([sys.executable, "-c", TICK_WHEN_TOLD, str(host), at], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for host in hosts]
    ready, results = release_together(ticks, timeout=120)
    assert ready == ["ready\n"] * 2
    assert [t.returncode for t in ticks] == [0, 0], [err[-2000:] for _out, err in results]
    got = Counter((address, kind) for r in relay.received for address in r.recipients
                  for kind in ("Overdue", "Escalation") if kind in r.subject)
    assert got == {(CA_CONTACT, "Overdue"): 1, (CA_OTHER_CONTACT, "Overdue"): 1,
                   (STAFF, "Escalation"): 1, (OTHER_STAFF, "Escalation"): 1}, \
        [(r.recipients, r.subject) for r in relay.received]
    assert Counter(r.message["Message-ID"] for r in relay.received).most_common(1)[0][1] == 1
    db = open_database(postgres_url)
    with db.read() as session:
        assert sorted(r.stage for r in session.exec(select(ReminderLog))) == [
            STAGE_ESCALATED, f"{STAGE_OVERDUE}-1"]
    db.dispose()
    relay.stop()


def test_a_tick_while_another_host_runs_the_scheduler_leaves_it_to_that_host(tmp_path,
                                                                           postgres_url):
    with running_bot(tmp_path, at=NOW, storage_url=postgres_url) as (bot, sink):
        inc = notify(bot, sink)
        command(bot, sink, f"/request certificate-list due {DUE_DAY}", inc)
    host = host_config(tmp_path, "b", postgres_url, sink.port)
    at = iso(DUE + timedelta(seconds=1)) or ""
    db = open_database(postgres_url)
    with scheduler_turn(db) as mine:  # this test is the host running the scheduler
        assert mine
        said = rootnotify(host, "tick", "--now", at, "--force")
        assert "scheduler running on another host" in said, said
        with db.read() as session:
            assert list(session.exec(select(ReminderLog))) == []
    said = rootnotify(host, "tick", "--now", at, "--force")  # the lock is free again
    assert "scheduler running on another host" not in said, said
    with db.read() as session:
        assert sorted(r.stage for r in session.exec(select(ReminderLog))) == [
            STAGE_ESCALATED, f"{STAGE_OVERDUE}-1"]
    db.dispose()


def test_two_senders_claiming_at_once_on_postgres_take_different_mails(tmp_path, postgres_url):
    """The claim of one host is not committed yet: the other takes the rest, without waiting."""
    config = load_config(write_config(tmp_path, smtp_port=free_port(), relay_port=free_port(),
                                      storage_url=postgres_url))
    first_db, second_db = open_database(postgres_url), open_database(postgres_url)
    clock = FixedClock(NOW)
    first, second = make_context(config, first_db, clock), make_context(config, second_db, clock)
    with first_db.write() as session:
        for n in range(2):
            enqueue(session, first, MailSpec(kind="receipt", to=[CA_CONTACT], subject=f"m{n}",
                                             body="b"))
    taken: list[int] = []
    with first_db.write() as session:
        mine = _claim(session, first, 1)
        other = threading.Thread(target=lambda: taken.extend(_claim_now(second)))
        other.start()
        other.join(WAIT_SECONDS)
        waited = other.is_alive()
    other.join(WAIT_SECONDS)
    assert not waited, "the second claim waited for the first one's rows"
    assert len(mine) == 1 and len(taken) == 1 and set(mine) != set(taken)
    rows = outbox(postgres_url)
    assert {r.claimed_by for r in rows} == {r.claimed_by for r in rows[:1]}  # one process here
    assert all(as_utc(r.lease_until) == NOW + CLAIM_LEASE for r in rows)  # type: ignore[arg-type]
    first_db.dispose()
    second_db.dispose()


def _claim_now(ctx) -> list[int]:  # type: ignore[no-untyped-def]
    with ctx.db.write() as session:
        return _claim(session, ctx, 2)
