"""Measure the web board (`GET /incidents`) with 10,000 incidents against the bare query.

Goal (issue 21): the page in under 3x the query. The page is the real one:
uvicorn on 127.0.0.1, a signed-in session, the board's first page sorted
by next deadline (filtered, sorted and paged in SQL, the first
`BOARD_PAGE_SIZE` rows built through bot/operator/views.py and rendered). The bare
query is the least SQL that gives that page, in raw sqlite3 on the same
database: the incident count, and the first page of incidents ordered by
next open deadline (which needs every incident's next deadline, so it
aggregates all open deadlines) with what the board shows of each (its
columns, the next deadline's kind and time, the overdue count). Fetching
every row, as the board once did, would flatter the ratio; fetching fewer
columns would not give the page. Rows are bulk inserted (no pipeline); each
incident has three deadlines, one open. Both are timed alternately, so both
see the same machine noise; the figures are medians.

    python -m bench.web_board [--incidents N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa

from bot.clock import FixedClock
from bot.config import load_config
from bot.operator.web import auth
from bot.operator.web.pages import BOARD_PAGE_SIZE
from bot.operator.web.server import serve_web
from storage import websignin
from storage.db import open_database
from storage.models import Deadline, Incident
from tests.harness import free_port

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
CHUNK = 20_000
CAS = ("Example CA", "Other CA", "Third CA")
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
[web]
port = {port}
""" + "".join(f'[[ca]]\nname = "{ca}"\ncontacts = ["c{n}@ca{n}.test"]\n'
              for n, ca in enumerate(CAS))
COUNT_QUERY = "SELECT COUNT(*) FROM incident"
# The board's order: next deadline soonest first, none last, ties by incident.
BARE_QUERY = """
SELECT p.*, (SELECT kind FROM deadline d
             WHERE d.incident_id = p.id AND d.state = 'open' AND d.due_at = p.next_due_at
             ORDER BY d.id LIMIT 1) AS next_due_kind
FROM (SELECT i.id, i.ca, i.category, i.status, i.notified_at, i.notified_on_time,
             i.late_by_seconds, n.next_due_at, COALESCE(n.overdue, 0) AS overdue
      FROM incident i LEFT JOIN (
          SELECT incident_id, MIN(due_at) AS next_due_at, SUM(due_at <= ?) AS overdue
          FROM deadline WHERE state = 'open' GROUP BY incident_id) n ON n.incident_id = i.id
      ORDER BY n.next_due_at IS NULL, n.next_due_at, i.year, i.seq LIMIT ?) p
"""


def build(folder: Path, incidents: int, port: int) -> Path:
    path = folder / "config.toml"
    path.write_text(CONFIG.format(db=folder / "bench.db", port=port))
    db = open_database(load_config(path).storage_url)
    with db.engine.begin() as conn:
        for lo in range(0, incidents, CHUNK):
            span = range(lo, min(lo + CHUNK, incidents))
            conn.execute(sa.insert(Incident.__table__), [  # type: ignore[attr-defined]
                {"id": f"INC-2026-{i:05d}", "year": 2026, "seq": i, "ca": CAS[i % len(CAS)],
                 "status": "open" if i % 4 else "closed", "category": "mis-issuance",
                 "ruleset": "2019-03", "notified_at": NOW - timedelta(days=30, minutes=i),
                 "notification_deadline": NOW - timedelta(days=30),
                 "notified_on_time": i % 7 != 0, "late_by_seconds": 3600 if i % 7 == 0 else None,
                 "reports_mode": "as-discovered", "exceptional": False,
                 "created_at": NOW - timedelta(days=30), "thread_message_id": f"<{i}@ca>"}
                for i in span])
            conn.execute(sa.insert(Deadline.__table__), [  # type: ignore[attr-defined]
                {"incident_id": f"INC-2026-{i:05d}", "kind": kind, "rule": "R2",
                 "due_at": NOW + timedelta(days=(i % 20) - 5, hours=k), "state": state,
                 "created_at": NOW - timedelta(days=20), "reminders_sent": 0}
                for i in span
                for k, (kind, state) in enumerate((("certificate-list", "open"),
                                                   ("final-report", "satisfied"),
                                                   ("info", "cancelled")))])
    db.dispose()
    return path


def signed_in_cookie(config_path: Path) -> str:
    config = load_config(config_path)
    db = open_database(config.storage_url)
    session_id = auth.new_secret()
    with db.write() as session:
        websignin.add_session(session, auth.digest(session_id), "alice@program.test", "x",
                              NOW, NOW + auth.SESSION_LIFETIME, "127.0.0.1")
    db.dispose()
    return session_id


def bare(db_file: Path) -> tuple[float, int, list[str]]:
    """(seconds, the incident count, the first page's ids) by the bare query."""
    t0 = time.perf_counter()
    with sqlite3.connect(db_file) as conn:
        (count,), = conn.execute(COUNT_QUERY).fetchall()
        rows = conn.execute(BARE_QUERY, (NOW.replace(tzinfo=None).isoformat(" "),
                                         BOARD_PAGE_SIZE)).fetchall()
    return time.perf_counter() - t0, count, [row[0] for row in rows]


def read_model(config_path: Path) -> float:
    """`pages.board` alone: the part of the page that reads."""
    from bot.operator.web.pages import board

    db = open_database(load_config(config_path).storage_url)
    t0 = time.perf_counter()
    with db.read() as session:
        board(session, NOW, sort="next")
    elapsed = time.perf_counter() - t0
    db.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        t0 = time.perf_counter()
        path = build(Path(tmp), args.incidents, port)
        print(f"built {args.incidents:,} incidents in {time.perf_counter() - t0:.1f} s")
        cookie = signed_in_cookie(path)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        stop, started = asyncio.Event(), asyncio.Event()
        serving = asyncio.run_coroutine_threadsafe(
            serve_web(load_config(path), stop, clock=FixedClock(NOW), started=started), loop)
        asyncio.run_coroutine_threadsafe(started.wait(), loop).result(30)
        pages, queries, models = [], [], []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                          cookies={"rn_session": cookie}) as client:
            for _ in range(args.rounds + 1):  # the first round warms caches and imports
                t1 = time.perf_counter()
                page = client.get("/incidents?sort=next")
                pages.append(time.perf_counter() - t1)
                assert page.status_code == 200, page.status_code
                shown = [line.split('"', 1)[0]
                         for line in page.text.split('<tr><td><a href="/incidents/')[1:]]
                assert f"{args.incidents} incident(s)" in page.text
                elapsed, count, ids = bare(Path(tmp) / "bench.db")
                assert count == args.incidents
                assert shown == ids, "the bare query must give the page's rows"
                queries.append(elapsed)
                models.append(read_model(path))
        loop.call_soon_threadsafe(stop.set)
        serving.result(30)
        page_s, query_s = statistics.median(pages[1:]), statistics.median(queries[1:])
        print(f"board page, {args.incidents:,} incidents: {page_s * 1000:.0f} ms "
              f"({len(page.content) / 1e3:.0f} kB HTML; median of {args.rounds})")
        print(f"bare query, same rows: {query_s * 1000:.1f} ms (median of {args.rounds})")
        model_s = statistics.median(models[1:])
        print(f"read model (pages.board) alone: {model_s * 1000:.0f} ms, "
              f"{model_s / query_s:.1f}x the query")
        print(f"ratio: {page_s / query_s:.1f}x (goal < 3x)")


if __name__ == "__main__":
    main()
