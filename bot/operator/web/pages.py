"""What the web pages show beyond `bot/operator/views.py`: sorting, deadlines by week, searches.

Everything here reads through `storage.queries` and returns plain data (the
same shapes the JSON answers carry); the templates only lay it out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from bot.clock import as_utc, iso
from bot.decide.incident.timeliness import format_span
from bot.operator.views import IncidentRow, incident_list_rows
from bot.rules.rulesets import FORM_FIELDS_BY_KEY
from storage import queries
from storage.models import Certificate

# Board columns one may sort by (storage.queries.board_rows orders by each);
# no next deadline sorts after every time, ties keep incident order.
BOARD_SORTS = ("id", "ca", "category", "status", "notified", "next", "overdue")
DEFAULT_SORT = "id"
# Rows on one page of the board: a person reads a screenful, not 10,000 rows,
# and rendering every row of a large program cost 2-3x reading them all
# (bench/web_board.py). Filters and sorting apply to all rows first.
BOARD_PAGE_SIZE = 100
# Search results shown at most; a domain in a million-row list is not read in full here.
SEARCH_LIMIT = 200
# How many days ahead the deadlines page lays out day by day.
WEEK_DAYS = 7
_HEX = re.compile(r"^[0-9a-f]+$")
# RFC 5280 serials are at most 20 octets; some CAs went a little past that.
MAX_SERIAL_HEX = 42


@dataclass(frozen=True)
class Board:
    """One page of the board: its rows (`incidents --json` rows), and where it is."""

    rows: list[IncidentRow]
    total: int  # incidents the filters keep, on every page
    page: int  # counting from 1
    pages: int


def board(session: Session, now: datetime, *, only_open: bool = False, overdue: bool = False,
          ca: str | None = None, sort: str = DEFAULT_SORT, descending: bool = False,
          page: int = 1, size: int = BOARD_PAGE_SIZE) -> Board:
    """Page `page` of the incidents `incidents --open --overdue --ca` keeps, sorted by `sort`.

    The same rows `filter_incidents` keeps, in the order sorting them by the
    column would give; a page past the end is the last one. SQL filters,
    sorts and pages; only the rows shown are built.
    """
    cas = queries.incident_cas(session) if ca is not None or sort == "ca" else []
    folded = sorted({name.casefold() for name in cas})
    query = queries.BoardQuery(
        now=now, only_open=only_open, overdue=overdue,
        # As `filter_incidents` compares: Python's casefold, which SQL's lower() is not.
        cas=None if ca is None else [n for n in cas if n.casefold() == ca.strip().casefold()],
        sort=sort if sort in BOARD_SORTS else DEFAULT_SORT, descending=descending,
        ca_rank={name: folded.index(name.casefold()) for name in cas})
    total = queries.board_count(session, query)
    pages = max(1, -(-total // size))
    page = min(max(1, page), pages)
    incidents = queries.board_rows(session, query, (page - 1) * size, size)
    deadlines = queries.open_deadline_rows(session, [row[0] for row in incidents])
    return Board(incident_list_rows(incidents, deadlines, now), total, page, pages)


def local(value: str | datetime | None, tz: tzinfo) -> str:
    """`2026-11-26 14:00 +01:00`: the configured zone, with its offset shown."""
    if not value:
        return "–"
    at = datetime.fromisoformat(value) if isinstance(value, str) else as_utc(value)
    at = at.astimezone(tz)
    offset = at.strftime("%z")
    return f"{at:%Y-%m-%d %H:%M} {offset[:3]}:{offset[3:]}"


def verdict(row: dict[str, Any]) -> str:
    """The 24-hour verdict (R1) as a person says it."""
    if row.get("notified_on_time") is None:
        return "unjudged"
    if row["notified_on_time"]:
        return "on time"
    return f"late by {format_span(timedelta(seconds=row.get('late_by_seconds') or 0))}"


def label(key: str) -> str:
    field = FORM_FIELDS_BY_KEY.get(key)
    return field.label if field else key


def deadlines(session: Session, now: datetime, tz: tzinfo) -> list[dict[str, Any]]:
    """Every open deadline, overdue first (they are the earliest), then by due time."""
    return [{"incident": d.incident_id, "ca": ca, "kind": d.kind, "due_at": iso(d.due_at),
             "rule": d.rule, "text": d.text, "overdue": as_utc(d.due_at) <= now}
            for d, ca in queries.open_deadlines_with_ca(session)]


def by_week(rows: list[dict[str, Any]], now: datetime, tz: tzinfo
            ) -> tuple[list[dict[str, Any]], list[tuple[str, list[dict[str, Any]]]],
                       list[dict[str, Any]]]:
    """(overdue, [(day, due that day) for the next 7 days in the zone], later)."""
    today = now.astimezone(tz).date()
    days = [today + timedelta(days=n) for n in range(WEEK_DAYS)]
    week: dict[str, list[dict[str, Any]]] = {f"{d:%A %Y-%m-%d}": [] for d in days}
    overdue, later = [], []
    for r in rows:
        if r["overdue"]:
            overdue.append(r)
            continue
        day = datetime.fromisoformat(r["due_at"]).astimezone(tz).date()
        name = f"{day:%A %Y-%m-%d}"
        if name in week:
            week[name].append(r)
        else:
            later.append(r)
    return overdue, list(week.items()), later


def classify_query(text: str) -> tuple[str, str] | None:
    """What a search names: ("sha256"|"serial"|"domain", canonical value); None if nothing."""
    q = text.strip().lower()
    if not q:
        return None
    compact = re.sub(r"[\s:]", "", q)
    compact = compact[2:] if compact.startswith("0x") else compact
    if len(compact) == 64 and _HEX.match(compact):
        return "sha256", compact
    if "." not in q and compact and len(compact) <= MAX_SERIAL_HEX and _HEX.match(compact):
        return "serial", compact.lstrip("0") or "0"
    return "domain", q.rstrip(".")


def _certificate(c: Certificate) -> dict[str, Any]:
    return {"incident": c.incident_id, "sha256": c.sha256, "serial": c.serial,
            "issuer": c.issuer, "subject": c.subject,
            "dns_names": [n for n in c.dns_names.split("\n") if n],
            "not_before": iso(c.not_before), "not_after": iso(c.not_after)}


def certificate_search(session: Session, text: str,
                       incident_id: str | None = None) -> dict[str, Any] | None:
    """Certificates (and listed domains) matching a serial, fingerprint or domain."""
    what = classify_query(text)
    if what is None:
        return None
    kind, value = what
    found = queries.certificates_matching(session, incident_id=incident_id,
                                          limit=SEARCH_LIMIT, **{kind: value})
    certificates = [_certificate(c) for c in found]
    domains: list[dict[str, Any]] = []
    if kind == "domain":
        # LIKE found the names containing the text; keep the certificates naming it exactly.
        certificates = [c for c in certificates if value in c["dns_names"]]
        domains = [{"incident": d.incident_id, "name": d.name}
                   for d in queries.domains_matching(session, value, incident_id,
                                                     SEARCH_LIMIT)]
    return {"query": value, "kind": kind, "certificates": certificates, "domains": domains,
            "truncated": len(found) >= SEARCH_LIMIT}


# The actions on an incident's page: (label, the command line). A DATE is
# filled in a week ahead; staff change it in their mail client before sending.
ACTIONS: tuple[tuple[str, str], ...] = (
    ("Request certificate list", "/request certificate-list due {week}"),
    ("Request reports every 7 days", "/request reports every 7d"),
    ("Request final report", "/request final-report due {month}"),
    ("Request investigative report", "/request investigative-report due {month}"),
    ("Ask for information", "/request info due {week}: "),
    ("Add a note", "/note "),
    ("Accept final report", "/accept final-report"),
    ("Mark resolved", "/resolved"),
    ("Mail me the status", "/status"),
    ("Close", "/close"),
    ("Reopen", "/reopen"),
)


def actions(incident_id: str, bot_address: str, now: datetime, tz: tzinfo
            ) -> list[dict[str, str]]:
    """Each action a `mailto:` link: the tag in the subject, the command in the body."""
    today = now.astimezone(tz).date()
    dates = {"week": (today + timedelta(days=7)).isoformat(),
             "month": (today + timedelta(days=30)).isoformat()}
    subject = quote(f"Re: [{incident_id}] staff command", safe="")
    return [{"label": text, "command": command.format(**dates),
             "href": f"mailto:{bot_address}?subject={subject}"
                     f"&body={quote(command.format(**dates), safe='')}"}
            for text, command in ACTIONS]
