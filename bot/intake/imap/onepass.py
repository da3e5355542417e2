"""One pass of the IMAP poller: fetch, commit and move overlapped, in that order per batch.

Three stages hand each batch on, in UID order:

    fetch (the poller's thread, its connection)
      -> commit (a writer thread: the batch's rows and the folder's `last_uid`
         in ONE transaction, committed)
      -> move (a mover thread on a second connection to the same folder)

so that while batch k is committed and batch k-1 moved, batch k+1 is already
being fetched. Measured on 2,000 messages of 2 KB in batches of 50 against
Dovecot (bench/imap.py, pyinstrument), doing the three one after the other
took ~6x as long as the fetches alone: per batch an RFC822.SIZE fetch, the
store, the commit's fsync, a second transaction for `last_uid`, and a MOVE
round trip plus Dovecot's own work on it (~7 ms a MOVE command). Overlapped,
the fetch is the critical path.

What keeps it exactly-once:

- A UID reaches the mover only after the transaction holding its message has
  committed; nothing is moved that is not durably stored.
- `last_uid` is committed with the rows, so a UID at or below it is stored.
  A crash (or a dropped connection) after the commit and before the MOVE leaves
  such messages in the folder; the next pass finds them by UID (at or below
  `last_uid`, under the same UIDVALIDITY: IMAP never reuses a UID there) and
  moves them without fetching them again (`ImapPoller._resume_moves`).
- The mover's connection must see the UIDVALIDITY the pass started with, or it
  refuses to move anything: after a recreation those UIDs would name other mail.

Memory stays bounded: a fetched batch holds at most `batch_size` messages and
`BATCH_MAX_BYTES` (bot/intake/imap/batches.py); at most `PIPELINE_BATCHES` fetched
batches wait for the writer, which takes what is waiting into one transaction;
one FETCH at most is sent ahead of the one being read.
A single-batch pass (the usual IDLE wake-up) opens no second connection: its
move follows on the poller's own connection.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from imapclient import IMAPClient

from bot.intake.imap.connection import ImapUnavailable, connect, describe, logout
from bot.intake.imap.fetch import Bodies
from storage.rawstore import Arrival, store_batch_direct

if TYPE_CHECKING:
    from bot.intake.imap.poller import ImapPoller

log = logging.getLogger("rootnotify.intake.imap")

# Fetched batches that may wait for the writer, and the most it takes into one
# transaction. With the next FETCH pipelined, the commit (its store and fsync,
# ~15 ms) became the pass's slowest stage at 2 batches a commit; 4 halves the
# fsyncs. Memory: at most 4 waiting + 4 being committed + 2 being fetched
# batches, each at most BATCH_MAX_BYTES (bot/intake/imap/batches.py).
PIPELINE_BATCHES = 4
# UIDs in one MOVE command. Runs of consecutive UIDs are sent as ranges, so
# this bounds the command line only for scattered UIDs (~7 bytes each, well
# under Dovecot's 64 KB imap_max_line_length); a MOVE costs Dovecot ~7 ms
# whatever its size, so fewer, larger ones are what keep up with the fetch.
MOVE_MAX_UIDS = 2_000
# Committed UIDs gathered before a MOVE (the rest go at the end of the pass).
# Measured on Dovecot, 2,000 moved 50 at a time: 0.29 s; 500 at a time: 0.12 s;
# and each MOVE makes the fetching session sync its expunges.
MOVE_MIN_UIDS = 500


@dataclass
class Fetched:
    """One fetched batch: the UIDs asked for (the highest is recorded) and what came back."""

    asked: list[int]
    uids: list[int]  # those present, in the order of `arrivals`
    arrivals: list[Arrival]

    @classmethod
    def taking(cls, uids: list[int], early: Bodies, now: datetime) -> Fetched:
        """The batch `uids` taken out of `early` (bodies read so far, by UID)."""
        present: list[int] = []
        arrivals: list[Arrival] = []
        for uid in uids:
            item = early.pop(uid, None)
            if item is None:
                continue  # expunged meanwhile by another client: not ours to take
            raw, when = item
            present.append(uid)
            arrivals.append(Arrival(raw=raw, channel="imap", received_at=when or now))
        return cls(asked=uids, uids=present, arrivals=arrivals)


def uid_set(uids: list[int]) -> str:
    """`1:5,9,12:13` for [1..5, 9, 12, 13]: ranges only over UIDs all in the list."""
    parts: list[str] = []
    ordered = sorted(uids)
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{start}:{prev}" if prev != start else str(start))
        start = prev = uid
    parts.append(f"{start}:{prev}" if prev != start else str(start))
    return ",".join(parts)


class _Mover:
    """Moves committed UIDs: on a second connection in its own thread, or at the end.

    Without a connection of its own (a one-batch pass, or the server refused a
    second one) it only collects; `finish` then moves on the poller's connection.
    """

    def __init__(self, poller: ImapPoller, uidvalidity: int, own_connection: bool) -> None:
        self.poller = poller
        self.uidvalidity = uidvalidity
        self.client: IMAPClient | None = None
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[int] | None] = queue.Queue()
        self._later: list[int] = []  # committed, for the poller's connection to move
        self._lock = threading.Lock()  # `_later` is filled by the writer, taken by the fetcher
        self._thread: threading.Thread | None = None
        if own_connection:
            # The connection is opened in the thread: its TLS handshake, login
            # and SELECT (~30 ms) overlap the first fetch instead of delaying it.
            self._thread = threading.Thread(target=self._run, name="imap-mover", daemon=True)
            self._thread.start()

    def submit(self, uids: list[int]) -> None:
        if self._thread is None:
            with self._lock:
                self._later += uids
        else:
            self._queue.put(uids)

    def _run(self) -> None:
        try:
            self.client = _second_connection(self.poller, self.uidvalidity)
        except BaseException as exc:  # reported to the fetching thread
            self.error = exc
        uids: list[int] = []
        done = False
        while not done:
            more = self._queue.get()
            if more is None:
                done = True
            else:
                uids += more
                if len(uids) < MOVE_MIN_UIDS:
                    continue  # a MOVE costs Dovecot ~7 ms whatever its size: gather first
            if not uids:
                continue
            if self.client is None:  # no second connection: the poller's moves them
                with self._lock:
                    self._later += uids
            elif self.error is None:  # after a failure, only drain: the next pass resumes
                try:
                    self._move_all(self.client, uids)
                except BaseException as exc:  # reported to the fetching thread
                    self.error = exc
            uids = []

    def _move_all(self, client: IMAPClient, uids: list[int]) -> None:
        for start in range(0, len(uids), MOVE_MAX_UIDS):
            self.poller._move(client, uids[start:start + MOVE_MAX_UIDS])

    def waiting(self) -> int:
        """Committed UIDs left for the poller's own connection to move."""
        return len(self._later)

    def move_waiting(self, main: IMAPClient, at_least: int) -> None:
        """Without a connection of its own: move on `main` once `at_least` UIDs wait."""
        if len(self._later) < at_least:
            return
        with self._lock:
            uids, self._later = self._later, []
        self._move_all(main, uids)

    def finish(self, main: IMAPClient | None) -> None:
        """Move what is left and close; `main` is None when that connection failed."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self.poller._mover_client = None
            logout(self.client)
        if main is not None and self.error is None:
            self.move_waiting(main, 1)
        if self.error is not None:
            raise self.error


class _Writer:
    """Commits fetched batches in order, each group in one transaction, then hands them on."""

    def __init__(self, poller: ImapPoller, uidvalidity: int,
                 committed: Callable[[list[int]], None]) -> None:
        self.poller = poller
        self.uidvalidity = uidvalidity
        self.committed = committed
        self.error: BaseException | None = None
        self._queue: queue.Queue[Fetched | None] = queue.Queue(maxsize=PIPELINE_BATCHES)
        self._thread = threading.Thread(target=self._run, name="imap-writer", daemon=True)
        self._thread.start()

    def put(self, fetched: Fetched) -> None:
        self._queue.put(fetched)  # never blocks for long: a failed writer keeps draining

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, done = [first], False
            while len(group) < PIPELINE_BATCHES:  # what waits shares the commit
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                group.append(more)
            if self.error is None:  # after a failure nothing more is stored this pass
                try:
                    self._commit(group)
                except BaseException as exc:  # reported to the fetching thread
                    self.error = exc
            if done:
                return

    def _commit(self, group: list[Fetched]) -> None:
        poller = self.poller
        arrivals = [a for f in group for a in f.arrivals]
        uids = [u for f in group for u in f.uids]
        with poller.db.write() as session:
            results = store_batch_direct(session, arrivals) if arrivals else []
            poller._advance(session, self.uidvalidity, max(u for f in group for u in f.asked))
        new = 0
        for uid, result in zip(uids, results, strict=True):
            if result.duplicate:
                poller.duplicates += 1
                log.info("%s: UID %d is a duplicate of message %d; moved only",
                         poller.peer, uid, result.id)
            else:
                new += 1
        poller.stored += new
        if new:
            poller.on_stored()
        if uids:
            self.committed(uids)


def run_pass(poller: ImapPoller, client: IMAPClient, batches: list[list[int]],
             uidvalidity: int, stop: threading.Event | None) -> int:
    """Fetch, commit and move `batches`; returns how many messages were taken."""
    mover = _Mover(poller, uidvalidity, own_connection=len(batches) > 1)
    writer = _Writer(poller, uidvalidity, mover.submit)
    taken = 0
    failed: BaseException | None = None
    ahead = iter(batches)
    pending = None  # a FETCH sent whose answer is not read yet (at most one)
    early: Bodies = {}  # messages of `pending` read with the answer before it
    try:
        while True:
            if pending is None:
                batch = next(ahead, None)
                if batch is None or (stop is not None and stop.is_set()):
                    break
                pending = poller._fetch_start(client, batch)
            # The next batch's FETCH goes out before this one's answer is read
            # (imapfetch.start_fetch), unless stopping, or the poller's own
            # connection must carry MOVEs first (no command may come between).
            following = None
            if (stop is None or not stop.is_set()) and mover.waiting() < MOVE_MIN_UIDS:
                batch = next(ahead, None)
                if batch is not None:
                    following = poller._fetch_start(client, batch)
            current, pending = pending, None
            fetched = poller._fetch_finish(client, current, early)
            pending = following
            writer.put(fetched)
            taken += len(fetched.uids)
            if pending is None:
                mover.move_waiting(client, MOVE_MIN_UIDS)
            if writer.error is not None or mover.error is not None:
                break
        if pending is not None:  # the writer or mover failed: read it, store nothing more
            poller._fetch_finish(client, pending, early)
    except BaseException as exc:  # the rest still runs: what was fetched is committed
        failed = exc
    writer.close()
    failed = failed or writer.error
    try:
        mover.finish(None if failed else client)
    except BaseException as exc:
        failed = failed or exc
    if failed is not None:
        raise failed
    return taken


def _second_connection(poller: ImapPoller, uidvalidity: int) -> IMAPClient | None:
    """A connection for the mover with the folder selected, or None (moves at the end)."""
    try:
        client = connect(poller.cfg)
    except Exception as exc:  # e.g. a per-user connection limit: slower, still correct
        log.warning("%s: no second connection for moving (%s); moving after the fetch",
                    poller.peer, describe(exc))
        return None
    poller._mover_client = client
    try:
        selected = client.select_folder(poller.cfg.folder)
        if int(selected[b"UIDVALIDITY"]) != uidvalidity:
            raise ImapUnavailable(f"{poller.peer}: {poller.cfg.folder!r} changed UIDVALIDITY "
                                  f"during the pass; taking it again from the start")
    except BaseException:
        poller._mover_client = None
        logout(client)
        raise
    return client
