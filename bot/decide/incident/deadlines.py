"""Deadline rows: opening, replacing, cancelling, and satisfying them by CA mail in the thread.

What a kind means (its rule, what satisfies it, whether it repeats) is the
table in `bot/rules/deadlines.py`. A new deadline's `next_reminder_at` is its
creation time: the reminder pass then works out its first stage from the
configured schedule, so nothing here needs the schedule (and `satisfy` can be
called by handlers that have no context).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.clock import as_utc
from bot.rules.deadlines import DEADLINE_KINDS_BY_NAME
from bot.rules.events import EventKind
from storage import queries
from storage.models import (
    DL_CANCELLED,
    DL_OPEN,
    DL_SATISFIED,
    Deadline,
    Event,
    InboundMessage,
    Incident,
)

log = logging.getLogger("rootnotify.decide.deadlines")


def due_text(due_at: datetime | None) -> str:
    return f"due {as_utc(due_at):%Y-%m-%d %H:%M} UTC" if due_at is not None else "no due date"


def label(deadline: Deadline) -> str:
    spec = DEADLINE_KINDS_BY_NAME.get(deadline.kind)
    name = spec.label if spec else deadline.kind
    return f"{name} ({due_text(deadline.due_at)})"


def overdue(deadline: Deadline, now: datetime) -> bool:
    """Open and past its due date; a deadline without a due date is never overdue."""
    return (deadline.state == DL_OPEN and deadline.due_at is not None
            and as_utc(deadline.due_at) <= now)


def open_deadline(session: Session, incident: Incident, kind: str, due_at: datetime | None,
                  now: datetime, *, text: str | None = None, interval: timedelta | None = None,
                  requested_by: str | None = None, inbound_id: int | None = None,
                  command: str | None = None) -> Deadline:
    spec = DEADLINE_KINDS_BY_NAME[kind]
    row = Deadline(incident_id=incident.id, kind=kind, due_at=due_at, state=DL_OPEN,
                   rule=spec.rule, text=text, created_at=now, requested_by=requested_by,
                   interval_seconds=int(interval.total_seconds()) if interval else None,
                   # No due date, no reminders: nothing to remind of.
                   next_reminder_at=now if due_at is not None else None)
    session.add(row)
    session.flush()
    session.add(Event(incident_id=incident.id, at=now,
                      kind=EventKind.DEADLINE_OPENED, rule=spec.rule,
                      inbound_id=inbound_id, command=command,
                      summary=f"{spec.label} {due_text(due_at)}"
                              + (f": {text}" if text else ""),
                      data=json.dumps({"deadline_id": row.id, "kind": kind})))
    return row


def close_deadline(session: Session, row: Deadline, state: str, now: datetime, why: str,
                   inbound_id: int | None = None, command: str | None = None) -> None:
    """Mark `row` satisfied or cancelled; it is never reminded again."""
    row.state = state
    row.next_reminder_at = None
    if state == DL_SATISFIED:
        row.satisfied_at = now
        row.satisfied_by = inbound_id
    session.add(row)
    session.add(Event(incident_id=row.incident_id, at=now, rule=row.rule, inbound_id=inbound_id,
                      kind=f"deadline-{state}", command=command,
                      summary=f"{label(row)} {state}: {why}",
                      data=json.dumps({"deadline_id": row.id, "kind": row.kind})))


def cancel_open(session: Session, incident: Incident, now: datetime, why: str,
                kinds: tuple[str, ...] | None = None, inbound_id: int | None = None,
                command: str | None = None) -> int:
    rows = [d for d in queries.open_deadlines(session, incident.id)
            if kinds is None or d.kind in kinds]
    for row in rows:
        close_deadline(session, row, DL_CANCELLED, now, why, inbound_id, command)
    return len(rows)


def _fits(row: Deadline, inbound_kind: str, complete: bool, hint_text: str) -> bool:
    spec = DEADLINE_KINDS_BY_NAME.get(row.kind)
    if spec is None or inbound_kind not in spec.satisfied_by:
        return False
    if spec.needs_complete and not complete:
        return False
    return not spec.hints or any(h in hint_text.lower() for h in spec.hints)


def satisfy(session: Session, incident: Incident, kind: str, inbound: InboundMessage,
            now: datetime, *, complete: bool = True, hint_text: str = "") -> list[str]:
    """A CA mail of inbound `kind` arrived in the thread: satisfy the open deadlines it fits.

    Returns what was satisfied, as phrases for the receipt ("the list of
    mis-issued certificates (due …)"). A repeating deadline (R3) gets its
    successor, due one interval after this mail. `complete` is False for a
    final report with items missing (R4: the deadline stays open);
    `hint_text` (subject, attachment names) lets an update fit a deadline that
    no classifier kind names, such as the investigative report (R5).
    """
    done: list[str] = []
    for row in queries.open_deadlines(session, incident.id):
        if not _fits(row, kind, complete, hint_text):
            continue
        close_deadline(session, row, DL_SATISFIED, now, f"{kind} received", inbound.id)
        done.append(label(row))
        spec = DEADLINE_KINDS_BY_NAME[row.kind]
        if spec.repeats and row.interval_seconds and incident.status == "open":
            every = timedelta(seconds=row.interval_seconds)
            open_deadline(session, incident, row.kind, now + every, now, text=row.text,
                          interval=every, requested_by=row.requested_by, inbound_id=inbound.id)
    if done:
        log.info("message %s satisfied in %s: %s", inbound.id, incident.id, "; ".join(done))
    return done
