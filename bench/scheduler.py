"""Measure a scheduler pass over 1,000,000 deadlines against one over 1,000, both with 10 due.

Goal (issue 5): the pass over the large history costs no more than 2x the pass
over the small one: a pass costs what is due, not the history. Rows are bulk
inserted (no pipeline). Each pass runs every job of `bot.service.scheduler.JOBS`; the
10 due deadlines are overdue, so every pass queues 10 reminders, and the
passes run a day apart so each finds a new daily stage due. The time of day
is before the digest hour, so the digest (once a day, and listing what is
open) is not part of the measured pass.

    python -m bench.scheduler [--rounds N] [--large N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bot.clock import FixedClock
from bot.config import load_config
from bot.context import make_context
from bot.service.scheduler import run_scheduler
from storage.db import open_database
from storage.models import Deadline, Incident

DUE = 10
DEADLINES_PER_INCIDENT = 10  # 1,000,000 deadlines over 100,000 incidents
CHUNK = 50_000  # rows per executemany: bounded memory, few round trips
START = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)  # 03:00 UTC: before the digest hour (8)
FAR = datetime(2031, 1, 1, tzinfo=UTC)  # open deadlines not due during the run

CONFIG = """
[bot]
address = "rootnotify@program.test"
data_dir = "var"
[storage]
url = "sqlite:///{db}"
[smtp]
enabled = false
[outgoing]
mode = "maildir"
from = "Root Program <rootnotify@program.test>"
[staff]
addresses = ["alice@program.test"]
auth = "none"
[[ca]]
name = "Example CA"
contacts = ["incidents@exampleca.test"]
"""


def build(folder: Path, deadlines: int) -> object:
    path = folder / "config.toml"
    path.write_text(CONFIG.format(db=folder / "bench.db"))
    config = load_config(path)
    db = open_database(config.storage_url)
    incidents = deadlines // DEADLINES_PER_INCIDENT
    with db.engine.begin() as conn:
        for lo in range(0, incidents, CHUNK):
            conn.execute(sa.insert(Incident.__table__), [  # type: ignore[attr-defined]
                {"id": f"INC-2026-{i:06d}", "year": 2026, "seq": i, "ca": "Example CA",
                 "status": "open" if i % 10 == 0 else "closed", "category": "other",
                 "ruleset": "2019-03", "notified_at": START - timedelta(days=30),
                 "reports_mode": "as-discovered", "exceptional": False,
                 "created_at": START - timedelta(days=30), "thread_message_id": f"<{i}@ca>"}
                for i in range(lo, min(lo + CHUNK, incidents))])
        for lo in range(0, deadlines, CHUNK):
            conn.execute(sa.insert(Deadline.__table__), [  # type: ignore[attr-defined]
                _deadline(n, incidents) for n in range(lo, min(lo + CHUNK, deadlines))])
    return make_context(config, db, FixedClock(START))


def _deadline(n: int, incidents: int) -> dict[str, object]:
    due = n < DUE  # the first ten are overdue; the rest are history or far ahead
    state = "open" if due or n % 20 == 0 else ("satisfied" if n % 3 else "cancelled")
    return {"incident_id": f"INC-2026-{n % incidents:06d}", "kind": "certificate-list",
            "rule": "R2", "due_at": START - timedelta(days=2) if due else START - timedelta(days=9),
            "state": state, "created_at": START - timedelta(days=20),
            "next_reminder_at": START - timedelta(hours=1) if due
            else (FAR if state == "open" else None), "reminders_sent": 0}


def plan(ctx: object) -> str:
    with ctx.db.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM deadline WHERE state = 'open' "
            "AND next_reminder_at <= '2026-11-20 03:00:00' ORDER BY next_reminder_at LIMIT 200"
        ).all()
    return "; ".join(str(r[-1]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small_dir, large_dir = Path(tmp, "small"), Path(tmp, "large")
        small_dir.mkdir()
        large_dir.mkdir()
        t0 = time.perf_counter()
        small = build(small_dir, 1_000)
        large = build(large_dir, args.large)
        print(f"built 1,000 and {args.large:,} deadline rows in {time.perf_counter() - t0:.1f} s")
        print(f"due query plan: {plan(large)}")
        # Interleave so both sizes see the same machine noise.
        s_times, l_times = [], []
        for k in range(args.rounds):
            s_times += passes_at(small, k)
            l_times += passes_at(large, k)
        s, big = statistics.median(s_times), statistics.median(l_times)
        print(f"pass over 1,000 rows, {DUE} due: {s * 1000:.2f} ms (median of {args.rounds})")
        print(f"pass over {args.large:,} rows, {DUE} due: {big * 1000:.2f} ms "
              f"(median of {args.rounds})")
        print(f"ratio: {big / s:.2f}x (goal <= 2x)")
        small.db.dispose()  # type: ignore[attr-defined]
        large.db.dispose()  # type: ignore[attr-defined]


def passes_at(ctx: object, k: int) -> list[float]:
    ctx.clock.set(START + timedelta(days=k))  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    report = run_scheduler(ctx)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - t0
    assert not report.errors, report.errors
    # Ten reminders each pass; the first pass also escalates each to staff.
    assert report.done.get("reminders") == (2 * DUE if k == 0 else DUE), report.done
    return [elapsed]


if __name__ == "__main__":
    main()
