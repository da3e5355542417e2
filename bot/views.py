"""Incidents as the contract's JSON: `incidents --json` rows and `show ID --json`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlmodel import Session

from bot.clock import iso
from bot.rules.rulesets import get_ruleset
from storage import queries
from storage.models import Incident


def incident_row(session: Session, incident: Incident, now: datetime) -> dict[str, Any]:
    return {
        "id": incident.id,
        "ca": incident.ca,
        "status": incident.status,
        "category": incident.category,
        "notified_at": iso(incident.notified_at),
        "notified_on_time": incident.notified_on_time,
        "next_due_at": iso(queries.next_due(session, incident.id)),
        "overdue": queries.overdue_count(session, incident.id, now),
    }


def incidents_json(session: Session, now: datetime) -> list[dict[str, Any]]:
    return [incident_row(session, i, now) for i in queries.incidents(session)]


def _final_report(session: Session, incident: Incident) -> dict[str, Any]:
    ruleset = get_ruleset(incident.ruleset)
    reports = queries.final_reports(session, incident.id)
    present: set[str] = set()
    for report in reports:
        present.update(k for k in report.present.split(",") if k)
    keys = ruleset.report_item_keys()
    return {
        "received": bool(reports),
        "present": [k for k in keys if k in present],
        "missing": [k for k in keys if k not in present],
    }


def incident_json(session: Session, incident: Incident, now: datetime) -> dict[str, Any]:
    values = queries.form_values(session, incident.id)
    form = {v.key: v.value for v in values if v.current}
    ruleset = get_ruleset(incident.ruleset)
    certs, domains = queries.certificate_counts(session, incident.id)
    rejected = sum(int(json.loads(e.data or "{}").get("rejected", 0))
                   for e in queries.events(session, incident.id) if e.kind == "certificate-list")
    messages = []
    for m in queries.inbound_for(session, incident.id):
        messages.append({"message_id": m.message_id, "direction": "in", "kind": m.kind,
                         "smime": m.smime, "status": m.state, "at": iso(m.received_at),
                         "from": m.from_address, "subject": m.subject})
    for o in queries.outbound_for(session, incident.id):
        messages.append({"message_id": o.message_id, "direction": "out", "kind": o.kind,
                         "smime": None, "status": o.status, "at": iso(o.created_at),
                         "sent_at": iso(o.sent_at), "to": o.recipients.split(","),
                         "subject": o.subject})
    messages.sort(key=lambda m: m["at"] or "")
    return {
        "id": incident.id,
        "ca": incident.ca,
        "status": incident.status,
        "category": incident.category,
        "ruleset": incident.ruleset,
        "incident_at": iso(incident_at(values, "incident_at")),
        "discovered_at": iso(incident_at(values, "discovered_at")),
        "notified_at": iso(incident.notified_at),
        "notification_deadline": iso(incident.notification_deadline),
        "notified_on_time": incident.notified_on_time,
        "late_by_seconds": incident.late_by_seconds,
        "exceptional": incident.exceptional,
        "reports_mode": incident.reports_mode,
        "form_source": incident.form_source,
        "form": form,
        "form_history": [
            {"key": v.key, "value": v.value, "recorded_at": iso(v.recorded_at),
             "current": v.current, "note": v.note} for v in values],
        "missing_fields": [k for k in ruleset.required_fields if k not in form],
        "deadlines": [
            {"kind": d.kind, "due_at": iso(d.due_at), "state": d.state, "rule": d.rule,
             "text": d.text, "satisfied_at": iso(d.satisfied_at)}
            for d in queries.deadlines(session, incident.id)],
        "certificates": {"count": certs, "unique_domains": domains, "rejected": rejected},
        "final_report": _final_report(session, incident),
        "notices": [
            {"action": n.action, "target": n.target, "effective_at": iso(n.effective_at),
             "exceptional": n.exceptional, "sent_at": iso(n.sent_at),
             "message_id": n.message_id, "recipients": n.recipients.split(",")}
            for n in queries.notices(session, incident.id)],
        "proposals": [
            {"received_at": iso(p.received_at), "state": p.state, "summary": p.summary}
            for p in queries.proposals(session, incident.id)],
        "messages": messages,
        "events": [
            {"at": iso(e.at), "kind": e.kind, "summary": e.summary, "rule": e.rule,
             "command": e.command}
            for e in queries.events(session, incident.id)],
    }


def incident_at(values: Any, key: str) -> datetime | None:
    current = [v for v in values if v.key == key and v.current]
    return current[-1].at_value if current else None
