"""Reminder stages of open deadlines: which stage is due, and sending it exactly once.

The schedule is the config's (`[scheduler] due_soon`, `overdue_every`): "due
soon" that long before the due time, "overdue" at the due time and then every
`overdue_every`; the first overdue reminder also escalates to staff. A notice
period (P1) reminds staff once, when it ends.

Exactly once: each stage sent is a `ReminderLog` row, unique on (deadline,
stage), written in the same transaction as the mail it causes; a second pass
at the same time, or a second scheduler racing this one, fails on that key
and sends nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from bot.clock import as_utc
from bot.compose.addressing import to_ca, to_staff
from bot.context import Context
from bot.decide.incident.deadlines import close_deadline
from bot.decide.incident.timeliness import format_span as span
from bot.rules.deadlines import AUDIENCE_STAFF, DEADLINE_KINDS_BY_NAME
from bot.rules.events import EventKind
from storage import queries
from storage.models import DL_OPEN, DL_SATISFIED, Deadline, Event, Incident, ReminderLog

log = logging.getLogger("rootnotify.reminders")

STAGE_DUE_SOON = "due-soon"
STAGE_OVERDUE = "overdue"  # stages are "overdue-1", "overdue-2", … (one per period)
STAGE_ENDED = "ended"  # a notice period's end, told to staff
STAGE_ESCALATED = "escalation"
# Deadlines handled per query; the pass repeats until nothing is due.
BATCH = 200


@dataclass(frozen=True)
class Plan:
    stage: str | None  # the stage due now, or None
    next_at: datetime | None  # when to look at the deadline again; None: never


def plan(deadline: Deadline, now: datetime, due_soon: timedelta, every: timedelta) -> Plan:
    """The stage due at `now` and the time of the next one; pure.

    A "due soon" reminder is sent only when the deadline was set before the
    "due soon" time: a request due in 12 hours already said so itself. After
    a scheduler outage only the current overdue stage is sent, not every
    missed one.
    """
    due = as_utc(deadline.due_at)
    spec = DEADLINE_KINDS_BY_NAME.get(deadline.kind)
    if now < due:
        soon = due - due_soon
        if (spec is None or spec.audience != AUDIENCE_STAFF) \
                and as_utc(deadline.created_at) < soon:
            if now < soon:
                return Plan(None, soon)
            return Plan(STAGE_DUE_SOON, due)
        return Plan(None, due)
    if spec is not None and spec.audience == AUDIENCE_STAFF:
        return Plan(STAGE_ENDED, None)
    n = int((now - due) / every) + 1
    return Plan(f"{STAGE_OVERDUE}-{n}", due + n * every)


def remind_due(ctx: Context, now: datetime) -> int:
    """Scheduler job: every deadline whose reminder time has come; returns mails queued."""
    sched = ctx.config.scheduler
    sent = 0
    seen: set[int] = set()
    while True:
        with ctx.db.read() as session:
            ids = [i for i in queries.due_reminder_ids(session, now, BATCH) if i not in seen]
        if not ids:
            return sent
        for deadline_id in ids:
            seen.add(deadline_id)
            try:
                sent += _remind_one(ctx, deadline_id, now, sched.due_soon, sched.overdue_every)
            except IntegrityError:
                # Another scheduler sent this stage first; its transaction won.
                log.info("deadline %d: reminder already sent by another pass", deadline_id)


def _remind_one(ctx: Context, deadline_id: int, now: datetime, due_soon: timedelta,
                every: timedelta) -> int:
    with ctx.db.write() as session:
        row = session.get(Deadline, deadline_id)
        if row is None or row.state != DL_OPEN or row.next_reminder_at is None \
                or as_utc(row.next_reminder_at) > now:
            return 0  # satisfied or handled meanwhile
        step = plan(row, now, due_soon, every)
        row.next_reminder_at = step.next_at
        session.add(row)
        if step.stage is None:
            return 0
        session.add(ReminderLog(deadline_id=deadline_id, stage=step.stage, sent_at=now))
        session.flush()  # the unique key decides here who sends
        incident = session.get(Incident, row.incident_id)
        assert incident is not None
        row.reminders_sent += 1
        return _send(session, ctx, incident, row, step.stage, now)


def _send(session: Session, ctx: Context, incident: Incident, row: Deadline, stage: str,
          now: datetime) -> int:
    spec = DEADLINE_KINDS_BY_NAME.get(row.kind)
    what = spec.label if spec else row.kind
    due = as_utc(row.due_at)
    session.add(Event(incident_id=incident.id, at=now, kind=f"reminder:{stage}", rule=row.rule,
                      summary=f"{what} due {due:%Y-%m-%d %H:%M} UTC: {stage}"))
    if stage == STAGE_ENDED:
        to_staff(session, ctx, "reminder", "notice-period-ended.txt.j2", incident=incident,
                 deadline=row, what=what)
        # P1: the period has run its course once staff are told; nothing is left open.
        close_deadline(session, row, DL_SATISFIED, now, "the notice period ended; staff told")
        return 1
    overdue_by = span(now - due) if now >= due else None
    to_ca(session, ctx, incident, "reminder", "reminder.txt.j2", deadline=row, what=what,
          stage=stage, overdue_by=overdue_by, left=span(due - now) if now < due else None)
    if stage.startswith(STAGE_OVERDUE) and not queries.reminder_logged(session, row.id or 0,
                                                                       STAGE_ESCALATED):
        session.add(ReminderLog(deadline_id=row.id, stage=STAGE_ESCALATED, sent_at=now))
        to_staff(session, ctx, "escalation", "escalation.txt.j2", incident=incident,
                 deadline=row, what=what, overdue_by=overdue_by)
        session.add(Event(incident_id=incident.id, at=now, kind=EventKind.ESCALATED, rule=row.rule,
                          summary=f"{what} overdue by {overdue_by}: staff told"))
        return 2
    return 1
