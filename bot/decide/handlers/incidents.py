"""Incidents: opening one from a notification, and filling its form from later mail.

Every change is an `Event` with its cause, so the events are the timeline;
every answer to the form is a `FormValue`, earlier answers kept (R4 item 3
asks why reports disagreed over time).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, col, select

from bot.compose.replies import acknowledgement, new_incident_alert, update_receipt
from bot.context import Context
from bot.decide.classify import Classification
from bot.decide.handlers.disclosure import open_disclosure_deadline
from bot.decide.handlers.duplicates import form_digest
from bot.decide.handlers.formchecks import ca_name_flag, with_ca_name
from bot.decide.incident.timeliness import Timeliness, compute_r1
from bot.parse.forms.notification import ParsedForm
from bot.rules.events import EventKind
from bot.rules.rulesets import FORM_FIELDS_BY_KEY
from bot.service.analysis import Analysis
from storage.counters import take_incident_number
from storage.models import Event, FormValue, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.incidents")

TIME_FIELDS = ("incident_at", "discovered_at")


@dataclass(frozen=True)
class FieldChange:
    key: str
    label: str
    value: str
    previous: str | None


def next_incident_id(session: Session, prefix: str, year: int) -> tuple[str, int]:
    # From the counter row (storage.counters), not max(seq) + 1: two hosts on
    # one PostgreSQL read the same max and opened the same number.
    seq = take_incident_number(session, year)
    return f"{prefix}-{year}-{seq:04d}", seq


def current_form(session: Session, incident_id: str) -> dict[str, FormValue]:
    rows = session.exec(select(FormValue).where(FormValue.incident_id == incident_id,
                                                col(FormValue.current).is_(True)))
    return {row.key: row for row in rows}


def _times(values: dict[str, FormValue]) -> dict[str, datetime | None]:
    return {key: values[key].at_value if key in values else None for key in TIME_FIELDS}


def _apply_timeliness(incident: Incident, r1: Timeliness) -> None:
    incident.notification_deadline = r1.deadline
    incident.notified_on_time = r1.on_time
    incident.late_by_seconds = int(r1.late_by.total_seconds()) if r1.late_by else None


def record_form(session: Session, incident: Incident, form: ParsedForm,
                inbound: InboundMessage, now: datetime, *, first: bool = False
                ) -> list[FieldChange]:
    """Store the answers that are new or changed; return what changed.

    The first form of an incident is one timeline event (its answers are in the
    form history); later changes are an event each, since those are the
    changes over time that R4 item 3 asks the CA to explain.
    """
    existing = {} if first else current_form(session, incident.id)
    changes = []
    new_rows: list[dict[str, object]] = []
    superseded = False
    for key, field in form.fields.items():
        old = existing.get(key)
        if old is not None and old.value.strip() == field.value.strip():
            continue
        if old is not None:
            old.current = False
            session.add(old)
            superseded = True
        new_rows.append({"incident_id": incident.id, "key": key, "value": field.value,
                         "at_value": field.at, "note": field.note, "inbound_id": inbound.id,
                         "recorded_at": now, "current": True})
        label = FORM_FIELDS_BY_KEY[key].label if key in FORM_FIELDS_BY_KEY else key
        changes.append(FieldChange(key, label, field.value, old.value if old else None))
        if first:
            continue
        session.add(Event(
            incident_id=incident.id, at=now, rule="R1a", inbound_id=inbound.id,
            kind=EventKind.FIELD_CHANGED if old else EventKind.FIELD_RECORDED,
            summary=(f"{label}: changed from {old.value[:80]!r} to {field.value[:80]!r}"
                     if old else f"{label}: {field.value[:120]}"),
            data=json.dumps({"key": key, "value": field.value,
                             "previous": old.value if old else None}),
        ))
    if superseded:
        # The answers they replace go first (one current answer per key). Only
        # then: a flush costs as much again as the answers' insert.
        session.flush()
    if new_rows:
        # One executemany: a form has a dozen answers, and ORM objects for each
        # were a tenth of the pipeline's time in bench/intake.py. On the
        # session's connection: the session's own execute would flush all
        # that is pending first. The incident row is written already.
        session.connection().execute(insert(FormValue.__table__), new_rows)  # type: ignore[arg-type]
    if first and changes:
        session.add(Event(
            incident_id=incident.id, at=now, rule="R1a", inbound_id=inbound.id,
            kind=EventKind.FORM_RECORDED,
            summary=f"form read from {form.source}: {len(changes)} answer(s) "
                    f"({', '.join(c.key for c in changes)})",
            data=json.dumps({c.key: c.value for c in changes}),
        ))
    return changes


def _insert_alone(session: Session, incident: Incident) -> None:
    """INSERT the new incident's row now, and let the session hold it as loaded.

    What follows refers to the row at once (the form's answers and the queued
    mail are written without the ORM). A flush would do it too, but would write
    everything else pending with it, for each new incident: a sixth of acting
    on a notification in bench/intake.py.
    """
    if session.in_nested_transaction():
        # Acted on with a savepoint per message (a message of the batch
        # failed): rolling a savepoint back forgets the objects it saw
        # inserted, so that the next incident may take this one's number.
        session.add(incident)
        session.flush()
        return
    table = Incident.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        insert(table).values({column.key: getattr(incident, column.key)
                              for column in table.columns}))
    make_transient_to_detached(incident)
    session.add(incident)


def open_incident(session: Session, ctx: Context, inbound: InboundMessage,
                  analysis: Analysis, cls: Classification) -> Incident:
    assert analysis.form is not None and cls.ca is not None
    config = ctx.config
    ruleset = config.bot.ruleset
    # R1a: a CA's contact need not write its CA's name; one that names another is flagged.
    form = analysis.form = with_ca_name(analysis.form, cls.ca.name)
    flags = [flag] if (flag := ca_name_flag(form, cls.ca.name)) else []
    notified_at = inbound.received_at
    incident_id, seq = next_incident_id(session, config.bot.incident_prefix, notified_at.year)
    incident = Incident(
        id=incident_id, year=notified_at.year, seq=seq, ca=cls.ca.name,
        category=form.category, ruleset=ruleset.name, notified_at=notified_at,
        form_source=form.source, thread_message_id=analysis.message.message_id,
        created_at=ctx.clock.now(), form_digest=form_digest(form),
    )
    times = {k: (form.fields[k].at if k in form.fields else None) for k in TIME_FIELDS}
    r1 = compute_r1(ruleset, times, notified_at)
    _apply_timeliness(incident, r1)
    _insert_alone(session, incident)
    session.add(Event(
        incident_id=incident.id, at=notified_at, kind=EventKind.INCIDENT_OPENED, rule="R1",
        inbound_id=inbound.id,
        summary=f"notification from {analysis.message.from_address} ({cls.ca.name}), "
                f"read from {form.source}; category {form.category}",
    ))
    session.add(Event(
        incident_id=incident.id, at=notified_at, rule="R1", inbound_id=inbound.id,
        kind=EventKind.NOTIFICATION_ON_TIME if r1.on_time else (
            EventKind.NOTIFICATION_LATE if r1.on_time is False
            else EventKind.NOTIFICATION_UNJUDGED),
        summary=f"24-hour window {r1.verdict()}",
    ))
    record_form(session, incident, form, inbound, notified_at, first=True)
    open_disclosure_deadline(session, incident, inbound.id)
    missing = form.missing(ruleset)
    flags.extend(r1.impossible)
    suppressed = acknowledgement(session, ctx, incident, inbound, analysis, cls.ca, r1, missing,
                                 flags)
    new_incident_alert(session, ctx, incident, inbound, analysis, r1, missing, flags, suppressed)
    log.info("incident %s opened for %s from message %s (%s)", incident.id, cls.ca.name,
             inbound.id, r1.verdict())
    return incident


def apply_update(session: Session, ctx: Context, incident: Incident, inbound: InboundMessage,
                 analysis: Analysis, cls: Classification,
                 satisfied: list[str] | None = None) -> list[FieldChange]:
    """A CA's reply in the thread: record new answers, re-judge R1, send a receipt."""
    assert cls.ca is not None
    now = inbound.received_at
    changes: list[FieldChange] = []
    form = analysis.answers or analysis.form  # one line "Label: answer" is a reply (R1a)
    if form is not None:
        changes = record_form(session, incident, form, inbound, now)
        if any(c.key == "category" for c in changes) or form.category != "other":
            incident.category = form.category
        if any(c.key in TIME_FIELDS for c in changes):
            values = current_form(session, incident.id)
            r1 = compute_r1(ctx.config.bot.ruleset, _times(values), incident.notified_at)
            _apply_timeliness(incident, r1)
            session.add(Event(incident_id=incident.id, at=now,
                              kind=EventKind.R1_RECOMPUTED, rule="R1",
                              inbound_id=inbound.id,
                              summary=f"24-hour window re-judged: {r1.verdict()}"))
        session.add(incident)
    session.add(Event(incident_id=incident.id, at=now, kind=EventKind.UPDATE_RECEIVED, rule="R3",
                      inbound_id=inbound.id,
                      summary=f"{cls.kind} from {analysis.message.from_address}: "
                              f"{len(changes)} answer(s) recorded"))
    values = current_form(session, incident.id)
    missing = [FORM_FIELDS_BY_KEY[k].label for k in ctx.config.bot.ruleset.required_fields
               if k not in values]
    update_receipt(session, ctx, incident, inbound, analysis, cls.ca, changes, missing,
                   satisfied or [], cls.recorded)
    return changes
