"""One scheduler at a time across hosts: a PostgreSQL advisory lock held around its run.

The scheduler's jobs are idempotent by unique keys (storage.models'
ReminderLog), so two running together send nothing twice; the lock spares
the work, the IntegrityErrors and the interleaving of two hosts' digests.

Session level, on a connection of its own held for the whole run: the jobs
commit many transactions of their own on other connections, so a
transaction-level lock (`pg_try_advisory_xact_lock`) would be gone before
the first job ended. A host that dies loses the lock with its connection
(the server ends the backend when the socket closes), so no lease to wait
out. SQLite has no such lock and needs none: its writers already take turns
(storage.writelock) and the keys decide.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storage.db import Database

# Any 64-bit number, the same in every rootnotify: "rootnsch" in ASCII.
SCHEDULER_LOCK = 0x726F6F746E736368


@contextmanager
def scheduler_turn(db: Database) -> Iterator[bool]:
    """True while this process may run the scheduler; False when another host is running it."""
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    with db.engine.connect() as connection:
        got = bool(connection.exec_driver_sql(
            f"SELECT pg_try_advisory_lock({SCHEDULER_LOCK})").scalar())
        connection.commit()  # not idle in a transaction while the jobs run
        try:
            yield got
        finally:
            if got:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({SCHEDULER_LOCK})")
                connection.commit()
