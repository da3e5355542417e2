"""Incidents as the contract's JSON: `incidents --json` rows and `show ID --json`.

The contract's fields (DESIGN.md, "Details of the contract") keep their names
and types; everything else here is added beside them for people and exports.
Times are ISO 8601 in UTC; the human views convert to the configured zone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any, TypedDict

from sqlmodel import Session

from bot.clock import as_utc, iso
from bot.rules.rulesets import get_ruleset
from storage import queries
from storage.models import (
    DL_OPEN,
    Event,
    FormValue,
    InboundMessage,
    Incident,
    OutboundMessage,
    comma_list,
)


def _identity(incident: Incident) -> dict[str, Any]:
    """The fields that name an incident, first in every view of it."""
    return {"id": incident.id, "ca": incident.ca, "status": incident.status,
            "category": incident.category, "ruleset": incident.ruleset}


class IncidentRow(TypedDict):
    """One incident in a list: `incidents --json`, and the web board's row."""

    id: str
    ca: str
    status: str
    category: str
    ruleset: str
    opened_at: str | None
    notified_at: str | None
    notification_deadline: str | None
    notified_on_time: bool | None
    late_by_seconds: int | None
    next_due_at: str | None
    next_due_kind: str | None
    open_deadlines: int
    overdue: int
    closed_at: str | None
    resolved_at: str | None


def incidents_json(session: Session, now: datetime) -> list[IncidentRow]:
    """`incidents --json`: one row per incident, in two queries for the whole list.

    Read as columns, not objects, and not one query per incident: the web
    board lists thousands (bench/web_board.py).
    """
    return incident_list_rows(queries.incident_rows(session),
                              queries.open_deadline_rows(session), now)


def incident_list_rows(incidents: Iterable[Sequence[Any]], open_deadlines: Iterable[Sequence[Any]],
                       now: datetime) -> list[IncidentRow]:
    """`incidents --json` rows of these incidents (queries.INCIDENT_ROW_COLUMNS), in their order.

    `open_deadlines` are (incident_id, kind, due_at) soonest first, as
    `queries.open_deadline_rows` reads them; the web board passes one page's.
    """
    open_deadlines_of: dict[str, int] = {}
    dated_of: dict[str, list[tuple[str, datetime]]] = {}  # soonest first
    for incident_id, kind, due_at in open_deadlines:
        open_deadlines_of[incident_id] = open_deadlines_of.get(incident_id, 0) + 1
        if due_at is not None:  # an undated request is open but never next nor overdue
            dated_of.setdefault(incident_id, []).append((kind, as_utc(due_at)))
    rows: list[IncidentRow] = []
    for (incident_id, ca, status, category, ruleset, created_at, notified_at,
         notification_deadline, on_time, late_by, closed_at,
         resolved_at) in incidents:
        dated = dated_of.get(incident_id, [])
        nxt = dated[0] if dated else None
        rows.append({
            "id": incident_id, "ca": ca, "status": status, "category": category,
            "ruleset": ruleset,
            "opened_at": iso(created_at),
            "notified_at": iso(notified_at),
            "notification_deadline": iso(notification_deadline),
            "notified_on_time": on_time,
            "late_by_seconds": late_by,
            "next_due_at": iso(nxt[1]) if nxt else None,
            "next_due_kind": nxt[0] if nxt else None,
            "open_deadlines": open_deadlines_of.get(incident_id, 0),
            "overdue": sum(1 for _kind, due in dated if due <= now),
            "closed_at": iso(closed_at),
            "resolved_at": iso(resolved_at),
        })
    return rows


def filter_incidents(rows: list[IncidentRow], *, only_open: bool = False,
                     overdue: bool = False, ca: str | None = None) -> list[IncidentRow]:
    """`incidents --open --overdue --ca NAME`: the same narrowing for the web board."""
    if only_open:
        rows = [r for r in rows if r["status"] == "open"]
    if overdue:
        rows = [r for r in rows if r["overdue"]]
    if ca is not None:
        rows = [r for r in rows if r["ca"].casefold() == ca.strip().casefold()]
    return rows


def quarantine_json(session: Session) -> list[dict[str, Any]]:
    """`quarantine --json`: mail from unknown senders, kept and never answered."""
    return [{"id": m.id, "message_id": m.message_id, "from": m.from_address,
             "subject": m.subject, "received_at": iso(m.received_at), "reason": m.note}
            for m in queries.quarantined(session)]


def _final_report(session: Session, incident: Incident) -> dict[str, Any]:
    ruleset = get_ruleset(incident.ruleset)
    reports = queries.final_reports(session, incident.id)
    present: set[str] = set()
    for report in reports:
        present.update(comma_list(report.present))
    keys = ruleset.report_item_keys()
    return {
        "received": bool(reports),
        "present": [k for k in keys if k in present],
        "missing": [k for k in keys if k not in present],
        "reports": [{"received_at": iso(r.received_at), "inbound_id": r.inbound_id}
                    for r in reports],
    }


def outbound_smime(data: bytes) -> str:
    """Our own mail is signed by our key when `[outgoing] signing_key` is set, else unsigned."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(data[:16384])
    content_type = (headers.get("Content-Type") or "").lower()
    signed = "multipart/signed" in content_type or "signed-data" in content_type
    return "valid" if signed else "unsigned"


def _inbound_message(m: InboundMessage) -> dict[str, Any]:
    return {"message_id": m.message_id, "direction": "in", "kind": m.kind or "other",
            "smime": m.smime, "status": m.state, "at": iso(m.received_at),
            "id": m.id, "channel": m.channel, "from": m.from_address, "subject": m.subject,
            "smime_reason": m.smime_reason, "date_header": iso(m.date_header),
            "sha256": m.sha256, "size": m.size, "note": m.note, "last_error": m.last_error}


def _outbound_message(o: OutboundMessage) -> dict[str, Any]:
    return {"message_id": o.message_id, "direction": "out", "kind": o.kind,
            "smime": outbound_smime(o.data), "status": o.status, "at": iso(o.created_at),
            "id": o.id, "sent_at": iso(o.sent_at), "to": o.recipients.split(","),
            "subject": o.subject, "sha256": hashlib.sha256(o.data).hexdigest(),
            "size": len(o.data), "in_reply_to_inbound": o.inbound_id,
            "last_error": o.last_error, "failed_to": comma_list(o.failed_recipients),
            "retrying_to": comma_list(o.retry_recipients)}


def _event(e: Event, inbound: dict[int, InboundMessage],
           outbound: dict[int, OutboundMessage]) -> dict[str, Any]:
    cause_in = inbound.get(e.inbound_id) if e.inbound_id is not None else None
    cause_out = outbound.get(e.outbound_id) if e.outbound_id is not None else None
    try:
        data = json.loads(e.data) if e.data else None
    except ValueError:  # an event's details are informative; a bad one must not hide the rest
        data = e.data
    return {
        "at": iso(e.at), "kind": e.kind, "summary": e.summary, "rule": e.rule,
        "command": e.command,
        "inbound_id": e.inbound_id,
        "message_id": cause_in.message_id if cause_in else (
            cause_out.message_id if cause_out else None),
        "smime": cause_in.smime if cause_in else None,
        "outbound_id": e.outbound_id,
        "data": data,
    }


def incident_at(values: Sequence[FormValue], key: str) -> datetime | None:
    current = [v for v in values if v.key == key and v.current]
    return current[-1].at_value if current else None


def incident_json(session: Session, incident: Incident, now: datetime) -> dict[str, Any]:
    values = queries.form_values(session, incident.id)
    form = {v.key: v.value for v in values if v.current}
    ruleset = get_ruleset(incident.ruleset)
    certs, domains = queries.certificate_counts(session, incident.id)
    events = queries.events(session, incident.id)
    rejected = 0
    for e in events:
        if e.kind == "certificate-list" and e.data:
            # A malformed detail must not break the whole view.
            with suppress(ValueError, TypeError, AttributeError):
                rejected += int(json.loads(e.data).get("rejected", 0))
    inbound_rows = queries.inbound_for(session, incident.id)
    outbound_rows = queries.outbound_for(session, incident.id)
    inbound = {m.id: m for m in inbound_rows if m.id is not None}
    inbound.update(queries.inbound_by_ids(
        session, [i for i in (e.inbound_id for e in events) if i is not None and i not in inbound]))
    outbound = {o.id: o for o in outbound_rows if o.id is not None}
    deadlines = queries.deadlines(session, incident.id)
    satisfied_by = queries.inbound_by_ids(
        session, [d.satisfied_by for d in deadlines if d.satisfied_by is not None])
    messages = [_inbound_message(m) for m in inbound_rows]
    messages += [_outbound_message(o) for o in outbound_rows]
    messages.sort(key=lambda m: m["at"] or "")
    return {
        **_identity(incident),
        "incident_at": iso(incident_at(values, "incident_at") or incident.incident_at),
        "discovered_at": iso(incident_at(values, "discovered_at") or incident.discovered_at),
        "notified_at": iso(incident.notified_at),
        "notification_deadline": iso(incident.notification_deadline),
        "notified_on_time": incident.notified_on_time,
        "late_by_seconds": incident.late_by_seconds,
        "opened_at": iso(incident.created_at),
        "closed_at": iso(incident.closed_at),
        "resolved_at": iso(incident.resolved_at),
        "merged_into": incident.merged_into,  # set when staff /merge'd it into that one
        "exceptional": incident.exceptional,
        "public_disclosure": incident.public_disclosure,
        "reports_mode": incident.reports_mode,
        "form_source": incident.form_source,
        "thread_message_id": incident.thread_message_id,
        "form": form,
        "form_history": [
            {"key": v.key, "value": v.value, "recorded_at": iso(v.recorded_at),
             "current": v.current, "note": v.note, "inbound_id": v.inbound_id,
             "message_id": inbound[v.inbound_id].message_id
             if v.inbound_id in inbound else None}
            for v in values],
        "missing_fields": [k for k in ruleset.required_fields if k not in form],
        "deadlines": [
            {"kind": d.kind, "due_at": iso(d.due_at), "state": d.state, "rule": d.rule,
             "id": d.id, "text": d.text, "created_at": iso(d.created_at),
             "requested_by": d.requested_by, "interval_seconds": d.interval_seconds,
             "satisfied_at": iso(d.satisfied_at),
             "satisfied_by": satisfied_by[d.satisfied_by].message_id
             if d.satisfied_by in satisfied_by else None,
             "reminders_sent": d.reminders_sent,
             "overdue": d.state == DL_OPEN and d.due_at is not None
                        and as_utc(d.due_at) <= now}
            for d in deadlines],
        "certificates": {"count": certs, "unique_domains": domains, "rejected": rejected},
        "final_report": _final_report(session, incident),
        "notices": [
            {"action": n.action, "target": n.target, "effective_at": iso(n.effective_at),
             "exceptional": n.exceptional, "sent_at": iso(n.sent_at),
             "message_id": n.message_id, "target_sha256": n.target_sha256,
             "recipients": comma_list(n.recipients)}
            for n in queries.notices(session, incident.id)],
        "proposals": [
            {"received_at": iso(p.received_at), "state": p.state, "summary": p.summary,
             "message_id": inbound[p.inbound_id].message_id
             if p.inbound_id in inbound else None}
            for p in queries.proposals(session, incident.id)],
        "messages": messages,
        "events": [_event(e, inbound, outbound) for e in events],
    }
