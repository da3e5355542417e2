"""`/status`: an incident's state and open deadlines, or every open incident and what is overdue."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from bot.clock import as_utc
from bot.decide.incident.deadlines import label
from bot.decide.incident.deadlines import overdue as is_overdue
from bot.decide.incident.timeliness import format_span
from bot.rules.rulesets import get_ruleset
from storage import queries
from storage.models import Incident, comma_list

# Incidents listed by a /status outside a thread; more belong in `rootnotify incidents`.
MAX_INCIDENTS = 200


def _deadline_lines(session: Session, incident: Incident, now: datetime) -> list[str]:
    lines = []
    for d in queries.open_deadlines(session, incident.id):
        due = as_utc(d.due_at) if d.due_at is not None else None
        when = ("no due date" if due is None else f"OVERDUE by {format_span(now - due)}"
                if due <= now else f"in {format_span(due - now)}")
        lines.append(f"{label(d)} — {when}" + (f": {d.text}" if d.text else ""))
    return lines


def incident_status(session: Session, incident: Incident, now: datetime) -> list[str]:
    ruleset = get_ruleset(incident.ruleset)
    lines = [f"{incident.id} ({incident.ca}): {incident.status}, {incident.category}, "
             f"ruleset {incident.ruleset}"
             + (", EXCEPTIONAL" if incident.exceptional else ""),
             f"Notified {as_utc(incident.notified_at):%Y-%m-%d %H:%M} UTC; reports: "
             f"{incident.reports_mode or 'not yet decided'}"]
    if incident.resolved_at is not None:
        lines.append(f"Resolved {as_utc(incident.resolved_at):%Y-%m-%d %H:%M} UTC")
    deadlines = _deadline_lines(session, incident, now)
    lines.append("Open deadlines:" if deadlines else "Open deadlines: none")
    lines.extend(f"  - {x}" for x in deadlines)
    for n in queries.notices(session, incident.id):
        lines.append(f"Notice: {n.action} {n.target} on {as_utc(n.effective_at):%Y-%m-%d %H:%M}"
                     f" UTC (sent {as_utc(n.sent_at):%Y-%m-%d %H:%M} UTC)")
    proposals = queries.open_proposals(session, incident.id)
    if proposals:
        lines.append(f"Open proposals: {len(proposals)}")
    reports = queries.final_reports(session, incident.id)
    if reports:
        have = {k for r in reports for k in comma_list(r.present)}
        missing = [i.title for i in ruleset.final_report_items if i.key not in have]
        lines.append("Final report: " + ("complete" if not missing
                                         else f"missing {'; '.join(missing)}"))
    return lines


def overall_status(session: Session, now: datetime) -> list[str]:
    incidents = queries.open_incidents(session, MAX_INCIDENTS)
    if not incidents:
        return ["No open incidents."]
    lines = [f"{len(incidents)} open incident(s):"]
    for incident in incidents:
        open_rows = queries.open_deadlines(session, incident.id)
        overdue = [d for d in open_rows if is_overdue(d, now)]
        lines.append(f"- {incident.id} ({incident.ca}, {incident.category}): "
                     f"{len(open_rows)} open deadline(s), {len(overdue)} overdue")
        lines.extend(f"    OVERDUE: {label(d)}" for d in overdue)
    return lines
