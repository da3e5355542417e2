"""The board's SQL (storage.queries.board_count/board_rows via pages.board): exact rows.

Six incidents with hand-picked deadlines, on SQLite and on PostgreSQL (a
database with an ICU locale, whose text order is not code point order):
each column sorted both ways, the filters alone and combined, paging past
either end. Each page's rows are exactly the command line's rows
(`incidents --json`) of the incidents expected, in the expected order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from bot.operator.views import filter_incidents, incidents_json
from bot.operator.web import pages
from storage.db import Database, open_database
from storage.models import Deadline, Incident
from tests.postgres import Postgres, postgres_cluster  # noqa: F401  (fixture)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
# seq: (CA, category, status, notified, [(kind, due, state)]); due None is an undated request.
INCIDENTS: dict[int, tuple[str, str, str, datetime, list[tuple[str, datetime | None, str]]]] = {
    1: ("Example CA", "mis-issuance", "open", NOW - 3 * DAY,
        [("certificate-list", NOW - DAY, "open"), ("final-report", NOW + 2 * DAY, "open")]),
    2: ("other ca", "CPS-violation", "closed", NOW - DAY,
        [("info", None, "open"), ("info", NOW - 5 * DAY, "satisfied")]),
    3: ("Other CA", "mis-issuance", "open", NOW - 6 * DAY,
        [("info", NOW + DAY, "open"), ("certificate-list", NOW - 2 * DAY, "open"),
         ("final-report", NOW, "open")]),  # due at the very instant: overdue
    4: ("Example CA", "audit", "open", NOW - 2 * DAY, []),
    5: ("Beta CA", "audit", "open", NOW - 4 * DAY,
        [("final-report", NOW + 3 * DAY, "open"), ("info", NOW - DAY, "cancelled")]),
    6: ("Example CA", "mis-issuance", "closed", NOW - 5 * DAY,
        [("certificate-list", NOW - DAY, "open")]),
}
# Each column's order, ascending; ties keep incident order, in both directions.
SORTED = {
    "id": [1, 2, 3, 4, 5, 6],
    "ca": [5, 1, 4, 6, 2, 3],  # beta, example, other (either case)
    "category": [2, 4, 5, 1, 3, 6],  # capitals before small letters
    "status": [2, 6, 1, 3, 4, 5],
    "notified": [3, 6, 5, 1, 4, 2],
    "next": [3, 1, 6, 5, 2, 4],  # none (4; 2's only open request is undated) last
    "overdue": [2, 4, 5, 1, 6, 3],
}
SORTED_DESCENDING = {
    "id": [6, 5, 4, 3, 2, 1],
    "ca": [2, 3, 1, 4, 6, 5],
    "category": [1, 3, 6, 4, 5, 2],
    "status": [1, 3, 4, 5, 2, 6],
    "notified": [2, 4, 1, 5, 6, 3],
    "next": [2, 4, 5, 1, 6, 3],
    "overdue": [3, 1, 6, 2, 4, 5],
}


def incident_id(seq: int) -> str:
    return f"INC-2026-{seq:04d}"


def fill(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(sa.insert(Incident.__table__), [  # type: ignore[attr-defined]
            {"id": incident_id(seq), "year": 2026, "seq": seq, "ca": ca, "status": status,
             "category": category, "ruleset": "2019-03", "notified_at": notified,
             "notification_deadline": notified + DAY, "notified_on_time": seq % 2 == 0,
             "late_by_seconds": None, "reports_mode": "as-discovered", "exceptional": False,
             "created_at": NOW - 10 * DAY + seq * timedelta(hours=1),
             "thread_message_id": f"<{seq}@ca>"}
            for seq, (ca, category, status, notified, _) in INCIDENTS.items()])
        conn.execute(sa.insert(Deadline.__table__), [  # type: ignore[attr-defined]
            {"incident_id": incident_id(seq), "kind": kind, "rule": "R2", "due_at": due,
             "state": state, "created_at": NOW - 10 * DAY, "reminders_sent": 0}
            for seq, (*_, deadlines) in INCIDENTS.items() for kind, due, state in deadlines])


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        database = open_database(f"sqlite:///{tmp_path / 'board.db'}")
    else:
        server: Postgres = request.getfixturevalue("postgres_server")
        name = f"t_{uuid.uuid4().hex[:12]}"
        with server.admin() as admin:
            # ICU's English order puts "beta" before "Example" and ignores case first:
            # the board must still sort as Python compares strings.
            admin.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 "
                          "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.utf8'")
        database = open_database(server.url(name))
    fill(database)
    yield database
    database.dispose()


def board(db: Database, **kwargs) -> tuple[list[dict], int, int, int]:  # type: ignore[no-untyped-def,type-arg]
    with db.read() as session:
        shown = pages.board(session, NOW, **kwargs)
    return shown.rows, shown.total, shown.page, shown.pages  # type: ignore[return-value]


def cli_rows(db: Database, seqs: list[int]) -> list[dict]:  # type: ignore[type-arg]
    with db.read() as session:
        by_id = {r["id"]: r for r in incidents_json(session, NOW)}
    return [by_id[incident_id(seq)] for seq in seqs]


@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("sort", pages.BOARD_SORTS)
def test_the_board_sorts_every_incident_by_each_column(db, sort, descending):
    expected = (SORTED_DESCENDING if descending else SORTED)[sort]
    assert board(db, sort=sort, descending=descending) == (cli_rows(db, expected), 6, 1, 1)


@pytest.mark.parametrize(("filters", "expected"), [
    ({"only_open": True}, [1, 3, 4, 5]),
    ({"overdue": True}, [1, 3, 6]),  # 6 is closed with a deadline still open
    ({"ca": " example ca "}, [1, 4, 6]),
    ({"ca": "OTHER CA"}, [2, 3]),  # both spellings of the name
    ({"ca": "Nobody CA"}, []),
    ({"only_open": True, "overdue": True}, [1, 3]),
    ({"only_open": True, "ca": "Example CA"}, [1, 4]),
    ({"only_open": True, "overdue": True, "ca": "other ca"}, [3]),
    ({"overdue": True, "sort": "next", "descending": True}, [1, 6, 3]),
    ({"only_open": True, "sort": "ca"}, [5, 1, 4, 3]),
], ids=repr)
def test_the_board_filters_as_the_command_line_does(db, filters, expected):
    assert board(db, **filters) == (cli_rows(db, expected), len(expected), 1, 1)
    narrowed = {k: v for k, v in filters.items() if k in ("only_open", "overdue", "ca")}
    with db.read() as session:
        assert {r["id"] for r in filter_incidents(incidents_json(session, NOW), **narrowed)} == {
            incident_id(seq) for seq in expected}


@pytest.mark.parametrize(("page", "expected", "number"), [
    (1, [3, 6], 1), (2, [5, 1], 2), (3, [4, 2], 3),
    (9, [4, 2], 3),  # past the end: the last page
    (0, [3, 6], 1),
])
def test_the_board_pages_the_sorted_incidents(db, page, expected, number):
    assert board(db, sort="notified", page=page, size=2) == (
        cli_rows(db, expected), 6, number, 3)
    # Filtered, then paged: the overdue incidents soonest next deadline first.
    assert board(db, overdue=True, sort="next", page=page, size=2)[:3] == (
        cli_rows(db, [3, 1] if number == 1 else [6]), 3, min(number, 2))


@pytest.mark.parametrize("sort", pages.BOARD_SORTS)
def test_an_empty_board_is_one_empty_page(tmp_path, sort):
    db = open_database(f"sqlite:///{tmp_path / 'empty.db'}")
    assert board(db, sort=sort, descending=True, page=2) == ([], 0, 1, 1)
    assert board(db, only_open=True, overdue=True, ca="Example CA", sort=sort) == ([], 0, 1, 1)
    db.dispose()
