"""Writers in two processes take turns (storage.writelock): one committing back to back
cannot keep another out, and a writer that dies leaves nothing locked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from storage.db import open_database
from storage.writelock import TurnTaking
from tests.harness import eventually

# The other process: opens the database, says so, and on a line from us makes
# one write transaction that records its name, then exits.
OTHER_WRITER = """
import sys
from sqlalchemy import text
from storage.db import open_database
from storage.writelock import TurnTaking
db = open_database(sys.argv[1])
print("open", flush=True)
sys.stdin.readline()
with db.write() as session:
    session.execute(text("INSERT INTO meta (key, value) VALUES (:k, 'x')"), {"k": sys.argv[2]})
db.dispose()
"""


def _blocked_on_flock(pid: int) -> bool:
    """Whether `pid` waits for a flock (a "->" line of /proc/locks)."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any("->" in line and "FLOCK" in line and f" {pid} " in line for line in lines)


def _other_writer(url: str, name: str) -> subprocess.Popen[bytes]:
    """The other process, with the database open, before it writes (`_go`)."""
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen([sys.executable, "-c", OTHER_WRITER, url, name], cwd=root,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdout.readline() == b"open\n"
    return process


def _go(process: subprocess.Popen[bytes]) -> None:
    assert process.stdin is not None
    process.stdin.write(b"go\n")
    process.stdin.flush()


def _order(db) -> list[str]:  # type: ignore[no-untyped-def]
    with db.read() as session:
        rows = session.execute(text("SELECT key FROM meta WHERE value = 'x' ORDER BY rowid"))
        return [row[0] for row in rows]


def test_a_writer_waiting_in_another_process_goes_before_our_next_transaction(tmp_path):
    url = f"sqlite:///{tmp_path / 'rootnotify.db'}"
    db = open_database(url)
    other = _other_writer(url, "theirs")
    with db.write() as session:
        session.execute(text("INSERT INTO meta (key, value) VALUES ('ours-1', 'x')"))
        _go(other)
        eventually("the other process waiting for the write lock",
                   lambda: _blocked_on_flock(other.pid))
    # Straight into the next transaction: SQLite alone would let us in first.
    with db.write() as session:
        session.execute(text("INSERT INTO meta (key, value) VALUES ('ours-2', 'x')"))
    assert other.wait(timeout=60) == 0
    assert _order(db) == ["ours-1", "theirs", "ours-2"]
    db.dispose()


def test_a_writer_killed_holding_the_lock_leaves_nothing_locked(tmp_path):
    url = f"sqlite:///{tmp_path / 'rootnotify.db'}"
    db = open_database(url)
    waiter = _other_writer(url, "after-the-crash")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom storage.db import open_database\n"
         "db = open_database(sys.argv[1])\nwith db.write():\n    print('holding', flush=True)\n"
         "    time.sleep(600)\n", url],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"holding\n"
    _go(waiter)
    eventually("the writer queued behind the holder", lambda: _blocked_on_flock(waiter.pid))
    holder.kill()
    holder.wait()
    assert waiter.wait(timeout=60) == 0
    assert _order(db) == ["after-the-crash"]
    db.dispose()


# The other process at the lock level: take the turn, note it in a file, give it back.
OTHER_TURN = """
import sys
from pathlib import Path
from storage.writelock import TurnTaking
turns = TurnTaking(Path(sys.argv[1]))
print("open", flush=True)
sys.stdin.readline()
turns.acquire()
with open(sys.argv[2], "a") as log:
    log.write("theirs\\n")
turns.release()
"""


def test_taking_the_lock_again_at_once_still_lets_the_waiter_in_first(tmp_path):
    database = tmp_path / "rootnotify.db"
    log = tmp_path / "turns.log"
    turns = TurnTaking(database)
    other = subprocess.Popen([sys.executable, "-c", OTHER_TURN, str(database), str(log)],
                             cwd=Path(__file__).resolve().parents[1],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert other.stdout is not None and other.stdout.readline() == b"open\n"
    turns.acquire()
    _go(other)
    eventually("the other process waiting for its turn", lambda: _blocked_on_flock(other.pid))
    turns.release()
    turns.acquire()  # no pause at all: the flock alone would usually go to us again
    with log.open("a") as out:
        out.write("ours\n")
    turns.release()
    assert other.wait(timeout=60) == 0
    turns.close()
    assert log.read_text().split() == ["theirs", "ours"]
