"""Writers of one SQLite database, in several processes, taking turns.

SQLite lets one writer in at a time and has the others poll: its busy
handler sleeps 1, 2, 5 … 100 ms between tries. A process that commits
transaction after transaction (the worker's pipeline under a backlog) leaves
the lock free for a millisecond between them, and a writer in another
process (the outbox sender claiming mail) nearly never lands in that gap:
in bench/intake.py the acknowledgements waited for the whole backlog.

So every writer that shares the database first passes two flock(2) locks on
files beside it, the turnstile and the writer's lock:

    take turnstile; take writer; give turnstile back; ...commit...; give writer back

A process that wants to write again right after it committed must first get
through the turnstile, which is held by whoever waits for the writer's lock
meanwhile: the lock goes to that waiter first, then back. The kernel puts a
waiting process to sleep (no polling), and a process that dies loses its
locks with its file descriptors, so a crash never leaves the database locked.
SQLite's own locking still decides what is safe; these locks only decide who
goes next.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class TurnTaking:
    """The two lock files of one database; `acquire`/`release` around each write transaction."""

    def __init__(self, database_file: Path) -> None:
        self._turnstile = _open(database_file.with_name(database_file.name + "-turnstile"))
        self._writer = _open(database_file.with_name(database_file.name + "-writer"))

    def acquire(self) -> None:
        fcntl.flock(self._turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._writer, fcntl.LOCK_EX)
        finally:
            fcntl.flock(self._turnstile, fcntl.LOCK_UN)

    def release(self) -> None:
        fcntl.flock(self._writer, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._turnstile, self._writer):
            os.close(fd)


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
