"""What the web pages show beyond `bot/views.py`: sorting, deadlines by week, searches, actions.

Everything here reads through `storage.queries` and returns plain data (the
same shapes the JSON answers carry); the templates only lay it out.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from typing import Any
from urllib.parse import quote

from sqlmodel import Session

from bot.clock import as_utc, iso
from bot.decide.timeliness import format_span
from bot.rules.rulesets import FORM_FIELDS_BY_KEY
from storage import queries
from storage.models import Certificate

# Board columns one may sort by, and the key of each; a missing value sorts last.
BOARD_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "id": lambda r: r["id"],
    "ca": lambda r: r["ca"].casefold(),
    "category": lambda r: r["category"],
    "status": lambda r: r["status"],
    "notified": lambda r: r["notified_at"] or "",
    "next": lambda r: r["next_due_at"] or "~",  # "~" sorts after every ISO time
    "overdue": lambda r: r["overdue"],
}
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


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    sort_key = BOARD_SORTS.get(key, BOARD_SORTS[DEFAULT_SORT])
    return sorted(rows, key=sort_key, reverse=descending)


def page_of(rows: list[dict[str, Any]], number: int, size: int
            ) -> tuple[list[dict[str, Any]], int, int]:
    """(the rows of page `number`, counting from 1, that page's number, the page count)."""
    pages = max(1, -(-len(rows) // size))
    number = min(max(1, number), pages)
    return rows[(number - 1) * size:number * size], number, pages


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
