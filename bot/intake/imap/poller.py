"""The IMAP poller: take new mail from one folder, store it durably, then move it aside.

The order for each batch is what makes intake exactly-once:

1. fetch the next UIDs above the stored `last_uid` with `BODY.PEEK[]` and
   INTERNALDATE in one command (never setting \\Seen), in batches of
   `batch_size` and at most `BATCH_MAX_BYTES`, so a 10,000-message folder
   never sits in memory;
2. store the batch in the raw store and record its highest UID, with
   UIDVALIDITY, in `ImapState`, in ONE transaction, and commit (duplicates,
   by Message-ID and body hash, are recognised there, across SMTP and IMAP),
   then wake the pipeline;
3. only then move the batch to `processed_folder` (MOVE, else COPY +
   \\Deleted + UID EXPUNGE of exactly those UIDs), creating the folder if
   missing.

A crash or a dropped connection before the commit leaves the batch in the
folder above `last_uid`: fetched again. After the commit and before the move,
it is in the folder at or below `last_uid`: stored, so the next pass moves it
without fetching it (`_resume_moves`); and any copy that reaches us again
under a new UID is recognised as a duplicate. Nothing is lost and nothing is
processed twice. A changed UIDVALIDITY (the folder was recreated) resets
`last_uid` to 0: everything still there is fetched again, and the dedup key
keeps that safe. Mail is never deleted except by the move.

In a pass over several batches the three steps overlap (fetch the next batch
while the last is committed and the one before is moved, on a second
connection): bot/intake/imap/onepass.py.
Connecting and logging in live in `bot/intake/imap/connection.py`.
All imapclient work runs in one dedicated thread; the event loop only starts
and stops it. IDLE waits in short `idle_check` slices so that `stop` is seen
within about a second, and is renewed well before the server's timeout.
Failures back off exponentially up to a cap, log one line each, record
`last_error`, and alert staff once when no poll has succeeded for
`alert_after` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import imaplib
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime

from imapclient import IMAPClient
from sqlalchemy import case, update
from sqlmodel import Session

from bot.clock import Clock, as_utc
from bot.config import Config
from bot.errors import ConfigError, RootnotifyError
from bot.intake.imap.batches import BATCH_MAX_BYTES, cut_batches
from bot.intake.imap.connection import (
    ImapLoginRefused,
    ImapUnavailable,
    LoginCheck,
    check_at_start,
    check_login,
    connect,
    describe,
    error_text,
    has_unread_input,
    logout,
    peer_of,
)
from bot.intake.imap.fetch import Bodies, PendingFetch, finish_fetch, start_fetch
from bot.intake.imap.moves import ensure_folder, move_to, not_yet_moved
from bot.intake.imap.onepass import MOVE_MAX_UIDS, Fetched, run_pass, uid_set
from storage.db import Database
from storage.models import ImapState

log = logging.getLogger("rootnotify.intake.imap")

# What callers use from here (bot/service/app.py, the CLI, the tests) without knowing
# that the connection lives in its own module.
__all__ = ["BATCH_MAX_BYTES", "ImapLoginRefused", "ImapPoller", "ImapUnavailable", "LoginCheck",
           "check_at_start", "check_login", "connect"]

# RFC 2177: servers may drop an IDLE after 30 minutes (Dovecot, Exchange: 29),
# and NAT boxes forget silent connections sooner; renewing every 5 minutes
# keeps the connection alive and doubles as a periodic full check.
IDLE_RENEW_SECONDS = 5 * 60
# One idle_check slice: how long `stop` can go unnoticed while idling.
IDLE_CHECK_SECONDS = 1.0
# Backoff after a failure: 1 s, 2 s, 4 s … capped at 5 minutes, so a long
# outage costs one attempt (and one log line) every 5 minutes.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 300.0
# How long `stop` waits for the poller thread before cutting its socket
# (a command in flight against a silent server would otherwise hold shutdown
# for up to imapconn.SOCKET_TIMEOUT_SECONDS).
STOP_GRACE_SECONDS = 3.0


class ImapPoller:
    """Polls (or IDLEs on) one folder until stopped; see the module docstring."""

    def __init__(self, config: Config, db: Database, clock: Clock,
                 on_stored: Callable[[], None] = lambda: None) -> None:
        self.config = config
        self.cfg = config.imap
        if self.cfg.processed_folder == self.cfg.folder:
            raise ConfigError(f"{config.path}: [imap] processed_folder must differ from folder")
        self.db = db
        self.clock = clock
        self.on_stored = on_stored
        self.peer = peer_of(self.cfg)
        self.use_move: bool | None = None  # None: as the server's capabilities say
        self.stored = 0  # newly stored messages, for tests and the benchmark
        self.duplicates = 0
        self.moved = 0
        self.resumed = 0  # stored by an earlier pass that stopped before moving them
        self.failures = 0  # consecutive, since the last successful connection
        self.backoff_first = BACKOFF_FIRST_SECONDS
        self.backoff_max = BACKOFF_MAX_SECONDS
        self._client: IMAPClient | None = None
        self._mover_client: IMAPClient | None = None  # a pass's second connection
        # The connection whose folder this pass EXAMINEd, and its UIDVALIDITY.
        self._examined: tuple[IMAPClient, int] | None = None
        self._alerted = False
        self._failing_since: datetime | None = None

    # -- lifecycle ------------------------------------------------------------

    async def run(self, stopping: asyncio.Event) -> None:
        """Run the poller thread until `stopping` is set; then stop it promptly."""
        stop = threading.Event()
        done: Future[None] = Future()

        def main() -> None:
            try:
                self.run_blocking(stop)
                done.set_result(None)
            except BaseException as exc:  # surfaced to the awaiting task
                done.set_exception(exc)

        threading.Thread(target=main, name="imap-poller", daemon=True).start()
        worker = asyncio.wrap_future(done)
        waiter = asyncio.ensure_future(stopping.wait())
        await asyncio.wait({worker, waiter}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        waiter.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(worker), STOP_GRACE_SECONDS)
        except TimeoutError:
            log.warning("%s: still busy at stop; closing its connection", self.peer)
            self._interrupt()
            try:
                await asyncio.wait_for(worker, STOP_GRACE_SECONDS)
            except TimeoutError:
                # Still connecting (no socket to cut yet): nothing is stored or
                # moved half-way then, so the daemon thread may die with us.
                log.warning("%s: left connecting at stop", self.peer)

    def run_blocking(self, stop: threading.Event) -> None:
        """Connect, take mail in, wait for more; on failure back off and reconnect."""
        while not stop.is_set():
            try:
                self._client = connect(self.cfg)
                self._connected(self._client, stop)
            except Exception as exc:  # every failure is logged, recorded and retried
                if stop.is_set():
                    break
                self.failures += 1
                delay = min(self.backoff_first * 2 ** (self.failures - 1), self.backoff_max)
                self._record_failure(exc, self.failures, delay)
                stop.wait(delay)
            finally:
                logout(self._client)
                self._client = None

    def _interrupt(self) -> None:
        for client in (self._client, self._mover_client):
            if client is not None:
                with contextlib.suppress(OSError):  # already closed: nothing to interrupt
                    client.socket().shutdown(socket.SHUT_RDWR)

    def _connected(self, client: IMAPClient, stop: threading.Event) -> None:
        """One connection's life: take in what is new, then IDLE or sleep, again."""
        self._ensure_folder(client, self.cfg.processed_folder)
        idle = self.cfg.idle and client.has_capability("IDLE")
        log.info("%s: connected; watching %r (%s)", self.peer, self.cfg.folder,
                 "IDLE" if idle else f"polling every {self.cfg.poll_interval} s")
        while not stop.is_set():
            # Until a pass finds nothing: mail that arrived during a pass is
            # reported by the server with that pass's commands, not at IDLE.
            if self.poll_once(client, stop) or stop.is_set():
                continue
            if idle:
                self._idle(client, stop)
            else:
                stop.wait(self.cfg.poll_interval)

    def _idle(self, client: IMAPClient, stop: threading.Event) -> None:
        """IDLE until new mail, renewal time, or stop; in short slices so stop is seen."""
        client.idle()
        slices = int(IDLE_RENEW_SECONDS / IDLE_CHECK_SECONDS)
        try:
            for _ in range(slices):
                if stop.is_set() or has_unread_input(client):
                    return
                responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
                # Anything but a keep-alive ("* OK Still here") is worth a look:
                # EXISTS is new mail; NO or BYE (Dovecot's answer when the
                # folder is deleted under us) means the next command fails and
                # we reconnect, which is how a recreated folder is noticed.
                if any(r and r[0] != b"OK" for r in responses):
                    return
        finally:
            client.idle_done()

    # -- one pass ---------------------------------------------------------------

    def poll_once(self, client: IMAPClient, stop: threading.Event | None = None) -> int:
        """Take in everything above `last_uid`, batch by batch; returns how many were taken."""
        # EXAMINE, not SELECT: Dovecot's first read-write SELECT after new mail
        # claims it (\\Recent; maildir new/ -> cur/), ~30 ms for 2,000
        # messages, before the first fetch. Fetching needs no write access;
        # the mover's connection selects read-write in parallel with the fetch,
        # and this connection does only when it moves itself (`_move`).
        selected = client.select_folder(self.cfg.folder, readonly=True)
        uidvalidity = int(selected[b"UIDVALIDITY"])
        self._examined = (client, uidvalidity)
        last_uid = self._check_uidvalidity(uidvalidity)
        if last_uid:
            self._resume_moves(client, last_uid)
        # "N:*" always matches the highest UID, even below N (RFC 3501 6.4.8).
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        batches = cut_batches(client, uids, self.cfg.batch_size) if uids else []
        taken = run_pass(self, client, batches, uidvalidity, stop) if uids else 0
        self._record_success()
        return taken

    def _resume_moves(self, client: IMAPClient, last_uid: int) -> None:
        """Move what an earlier pass stored but did not move (it stopped in between).

        `last_uid` is committed with the messages, so under this UIDVALIDITY
        every UID up to it that is still in the folder is stored already: it is
        moved without being fetched again.
        """
        left = not_yet_moved(client, last_uid, self._can_move(client))
        if left:
            log.info("%s: %d message(s) stored earlier but not moved; moving them now",
                     self.peer, len(left))
            for start in range(0, len(left), MOVE_MAX_UIDS):
                self._move(client, left[start:start + MOVE_MAX_UIDS])
            self.resumed += len(left)

    def _fetch(self, client: IMAPClient, uids: list[int]) -> Fetched:
        """One batch's bodies (never setting \\Seen) and arrival times, in one command."""
        return self._fetch_finish(client, self._fetch_start(client, uids), {})

    def _fetch_start(self, client: IMAPClient, uids: list[int]) -> tuple[list[int], PendingFetch]:
        """Send one batch's UID FETCH; its answer is read by `_fetch_finish`."""
        return uids, start_fetch(client, uid_set(uids))

    def _fetch_finish(self, client: IMAPClient, sent: tuple[list[int], PendingFetch],
                      early: Bodies) -> Fetched:
        """The answer to `sent`, taking from and adding to `early`.

        Dovecot runs pipelined FETCHes in parallel and interleaves their
        answers: reading up to one command's completion can also bring some of
        the next command's messages. Those wait in `early` (at most the one
        batch sent ahead) for the read that asks for them; dropping them would
        lose mail once `last_uid` passes them.
        """
        uids, pending = sent
        early.update(finish_fetch(client, pending))
        return Fetched.taking(uids, early, self.clock.now())

    def _move(self, client: IMAPClient, uids: list[int]) -> None:
        if self._examined is not None and self._examined[0] is client:
            self._select_writable(client, self._examined[1])
        target = self.cfg.processed_folder
        use_move = self._can_move(client)
        try:
            move_to(client, uids, target, use_move, self.peer)
        except imaplib.IMAP4.error as exc:
            if "TRYCREATE" not in error_text(exc).upper():
                raise
            self._ensure_folder(client, target)  # deleted while we were running
            move_to(client, uids, target, use_move, self.peer)
        self.moved += len(uids)

    def _select_writable(self, client: IMAPClient, uidvalidity: int) -> None:
        """SELECT the examined folder read-write, refusing a new UIDVALIDITY.

        After a recreation the pass's UIDs would name other mail: nothing is
        moved, and the next pass starts over under the new UIDVALIDITY.
        """
        selected = client.select_folder(self.cfg.folder)
        self._examined = None
        if int(selected[b"UIDVALIDITY"]) != uidvalidity:
            raise ImapUnavailable(f"{self.peer}: {self.cfg.folder!r} changed UIDVALIDITY "
                                  f"during the pass; taking it again from the start")

    def _can_move(self, client: IMAPClient) -> bool:
        return client.has_capability("MOVE") if self.use_move is None else self.use_move

    def _ensure_folder(self, client: IMAPClient, folder: str) -> None:
        ensure_folder(client, folder, self.peer)

    # -- state -----------------------------------------------------------------

    def _state(self, session) -> ImapState:  # type: ignore[no-untyped-def]
        row = session.get(ImapState, self.cfg.folder)
        return row if row is not None else ImapState(folder=self.cfg.folder)

    def _check_uidvalidity(self, uidvalidity: int) -> int:
        """The last UID taken under this UIDVALIDITY; 0 (re-scan) when it changed."""
        with self.db.write() as session:
            row = self._state(session)
            if row.uidvalidity != uidvalidity:
                if row.uidvalidity is not None:
                    log.warning("%s: UIDVALIDITY of %r changed from %s to %s; re-scanning the "
                                "folder (duplicates are recognised)", self.peer, self.cfg.folder,
                                row.uidvalidity, uidvalidity)
                row.uidvalidity = uidvalidity
                row.last_uid = 0
                session.add(row)
            return row.last_uid

    def _advance(self, session: Session, uidvalidity: int, uid: int) -> None:
        """Record `uid` as taken, in the caller's transaction (the one storing its messages).

        One statement in the same commit as the rows, rather than a transaction
        of its own after the move: that second commit (and its fsync) per batch
        was ~10% of intake's time, and recording the UID with the rows is what
        lets a later pass trust that everything up to it is stored.
        """
        now = self.clock.now()
        table = ImapState.__table__
        session.execute(
            update(table)
            .where(table.c.folder == self.cfg.folder, table.c.uidvalidity == uidvalidity)
            # A long first import is progress, not an outage.
            .values(last_uid=case((table.c.last_uid < uid, uid), else_=table.c.last_uid),
                    last_poll_at=now,
                    last_success_at=now))

    def _record_success(self) -> None:
        now = self.clock.now()
        with self.db.write() as session:
            row = self._state(session)
            row.last_poll_at = row.last_success_at = now
            row.last_error = None
            session.add(row)
        if self._failing_since is not None:
            log.info("%s: polling again after failures since %s", self.peer,
                     self._failing_since.isoformat(timespec="seconds"))
        self._failing_since = None
        self._alerted = False
        self.failures = 0

    def _record_failure(self, exc: BaseException, failures: int, delay: float) -> None:
        text = describe(exc)
        expected = isinstance(exc, RootnotifyError | OSError | imaplib.IMAP4.error)
        # One line per failure; a traceback only for what we did not foresee.
        log.warning("%s: %s; retry %d in %.1f s", self.peer, text, failures, delay,
                    exc_info=None if expected else exc)
        now = self.clock.now()
        if self._failing_since is None:
            self._failing_since = now
        try:
            with self.db.write() as session:
                row = self._state(session)
                row.last_poll_at = now
                row.last_error = text[:500]
                session.add(row)
                last_ok = as_utc(row.last_success_at) if row.last_success_at else None
            # Measured from the last success, even one before a restart: a bot
            # that was down for a day and comes back to a dead server alerts now.
            since = last_ok or self._failing_since
            if not self._alerted and (now - since).total_seconds() >= self.cfg.alert_after:
                self._alert(since, text)
        except Exception as db_exc:  # the database itself failing: logged, retried next time
            log.error("%s: could not record the failure: %s", self.peer, db_exc)

    def _alert(self, since: datetime, error: str) -> None:
        from bot.compose.alerts import alert_staff
        from bot.context import make_context

        ctx = make_context(self.config, self.db, self.clock)
        with self.db.write() as session:
            alert_staff(session, ctx,
                        subject=f"IMAP intake failing since {since.isoformat(timespec='minutes')}",
                        body=(f"rootnotify has not polled {self.cfg.folder!r} on "
                              f"{self.cfg.host}:{self.cfg.port} successfully since "
                              f"{since.isoformat(timespec='seconds')}.\n\n"
                              f"Last error: {error}\n\nMail sent to the intake mailbox waits "
                              f"there; it is taken in once the poller reconnects.\n"))
        self._alerted = True
        log.error("%s: no successful poll for %d s; staff alerted", self.peer,
                  int((self.clock.now() - since).total_seconds()))
