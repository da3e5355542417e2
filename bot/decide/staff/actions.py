"""What each accepted staff command does, as a table: (name, what) → action.

An action runs inside the message's transaction after every command of the
mail was checked (`bot/decide/staff/commands.py`), changes the incident, records an
event with the command line as its cause, mails the CA where it concerns
them, and returns the line that confirms it to the staff member.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session

from bot.clock import as_utc
from bot.compose.addressing import to_ca
from bot.compose.alerts import alert_staff
from bot.context import Context
from bot.decide.handlers import resolution
from bot.decide.handlers.proposals import answer_open
from bot.decide.incident import cadence
from bot.decide.incident.deadlines import cancel_open, close_deadline, label, open_deadline
from bot.decide.incident.notices import give_notice
from bot.decide.staff import merge as merging
from bot.decide.staff.status import incident_status, overall_status
from bot.parse.commands import Command
from bot.rules.deadlines import DEADLINE_KINDS_BY_NAME, REQUEST_KINDS
from bot.rules.events import EventKind
from bot.trust import Root
from storage import queries
from storage.models import DL_SATISFIED, Event, Incident

# Requests that replace an open one of their kind (a new due date); `info`
# requests are separate questions and stand side by side.
SINGLE_REQUESTS = ("certificate-list", "final-report", "investigative-report")


@dataclass
class Run:
    """One staff mail being executed."""

    ctx: Context
    session: Session
    incident: Incident | None
    inbound_id: int | None
    sender: str
    now: datetime


@dataclass(frozen=True)
class Step:
    """A command with what checking it resolved: its due time, root and action date."""

    command: Command
    due: datetime | None = None
    root: Root | None = None
    other: Incident | None = None  # for /merge: the incident to move into this one


Action = Callable[[Run, Step], list[str]]


def _event(run: Run, step: Step, kind: EventKind, summary: str) -> None:
    assert run.incident is not None
    run.session.add(Event(incident_id=run.incident.id, at=run.now, kind=kind,
                          rule=step.command.rule, inbound_id=run.inbound_id,
                          command=step.command.line, summary=f"{summary} (by {run.sender})"))


def _when(at: datetime) -> str:
    return f"{as_utc(at):%Y-%m-%d %H:%M} UTC"


def request(run: Run, step: Step) -> list[str]:
    incident, cmd = run.incident, step.command
    assert incident is not None and cmd.what is not None
    kind = REQUEST_KINDS[cmd.what]
    lines = []
    if kind in SINGLE_REQUESTS and cancel_open(run.session, incident, run.now,
                                               "replaced by a new request", (kind,),
                                               run.inbound_id, cmd.line):
        lines.append(f"The earlier open request for {DEADLINE_KINDS_BY_NAME[kind].label} "
                         "was replaced.")
    every = None
    if kind == "periodic-report":
        assert cmd.every is not None
        every = cmd.every
        cancel_open(run.session, incident, run.now, "staff set a report interval",
                    ("periodic-report", "update"), run.inbound_id, cmd.line)
        incident.reports_mode = cadence.MODE_EVERY
        incident.report_interval_seconds = int(every.total_seconds())
        run.session.add(incident)
    row = open_deadline(run.session, incident, kind, step.due, run.now, text=cmd.text,
                        interval=every, requested_by=run.sender, inbound_id=run.inbound_id,
                        command=cmd.line)
    to_ca(run.session, run.ctx, incident, "request", "request.txt.j2", inbound_id=run.inbound_id,
          deadline=row, what=DEADLINE_KINDS_BY_NAME[kind].label, every=every, text=cmd.text)
    lines.insert(0, f"Requested from {incident.ca}: {label(row)}"
                    + (f", then every {_span(every)}" if every else "")
                    + ". The CA was mailed.")
    return lines


def _span(every: timedelta) -> str:
    hours = int(every.total_seconds() // 3600)
    return f"{hours // 24} d" if hours % 24 == 0 else f"{hours} h"


def notice(run: Run, step: Step) -> list[str]:
    assert run.incident is not None and step.root is not None and step.due is not None
    row = give_notice(run.session, run.ctx, run.incident, step.root, step.due, run.now,
                      inbound_id=run.inbound_id, command=step.command.line)
    return [f"Notice given to {run.incident.ca}: root {step.root.name} ({step.root.sha256}) "
            f"on {_when(step.due)}; sent to {row.recipients} as {row.message_id}. "
            f"Staff will be reminded when the notice period ends."]


def exceptional(run: Run, step: Step) -> list[str]:
    assert run.incident is not None
    on = step.command.what == "on"
    run.incident.exceptional = on
    run.session.add(run.incident)
    _event(run, step, EventKind.EXCEPTIONAL_ON if on else EventKind.EXCEPTIONAL_OFF,
           "marked an Exceptional Circumstance: no 7-day notice needed" if on
           else "no longer an Exceptional Circumstance: notices need 7 days")
    return [f"{run.incident.id} is {'now' if on else 'no longer'} marked exceptional (P1)."]


def _tell_ca(run: Run, step: Step, kind: str, template: str, event_kind: EventKind,
             summary: str) -> list[str]:
    assert run.incident is not None
    _event(run, step, event_kind, summary)
    to_ca(run.session, run.ctx, run.incident, kind, template, inbound_id=run.inbound_id)
    return [f"{summary[0].upper()}{summary[1:]}. {run.incident.ca} was told."]


def require_investigator(run: Run, step: Step) -> list[str]:
    return _tell_ca(run, step, "request", "third-party-investigator.txt.j2",
                    EventKind.INVESTIGATOR_REQUIRED,
                    "a third-party investigator is required at the CA's expense (P6)")


def disqualify_audit(run: Run, step: Step) -> list[str]:
    return _tell_ca(run, step, "notice", "audit-disqualified.txt.j2",
                    EventKind.AUDIT_DISQUALIFIED,
                    "the CA's audit is disqualified and a new audit is required (P7)")


def accept_final_report(run: Run, step: Step) -> list[str]:
    incident = run.incident
    assert incident is not None
    rows = [d for d in queries.open_deadlines(run.session, incident.id)
            if d.kind == "final-report"]
    for row in rows:
        close_deadline(run.session, row, DL_SATISFIED, run.now, f"accepted by {run.sender}",
                       None, step.command.line)
    _event(run, step, EventKind.FINAL_REPORT_ACCEPTED, "final report accepted by staff")
    return ["The final report is accepted" + (f"; {len(rows)} deadline(s) closed."
                                              if rows else "; no final-report deadline was open.")]


def note(run: Run, step: Step) -> list[str]:
    assert run.incident is not None and step.command.text
    _event(run, step, EventKind.NOTE, f"note: {step.command.text}")
    answered = answer_open(run.session, run.incident, run.now, f"staff note: "
                           f"{step.command.text[:120]}", run.inbound_id, step.command.line)
    return ["Note recorded." + (f" {answered} open proposal(s) marked answered."
                                if answered else "")]


def resolved(run: Run, step: Step) -> list[str]:
    assert run.incident is not None
    return resolution.resolve(run.session, run.incident, run.now, run.sender, run.inbound_id,
                              step.command.line)


def close(run: Run, step: Step) -> list[str]:
    incident = run.incident
    assert incident is not None
    if incident.status == "closed":
        return [f"{incident.id} was already closed."]
    warning = _no_final_report_warning(run, step)
    incident.status = "closed"
    incident.closed_at = run.now
    run.session.add(incident)
    cancelled = cancel_open(run.session, incident, run.now, "incident closed", None,
                            run.inbound_id, step.command.line)
    _event(run, step, EventKind.INCIDENT_CLOSED,
           f"incident closed; {cancelled} open deadline(s) cancelled")
    return [f"{incident.id} closed; {cancelled} open deadline(s) cancelled.", *warning]


def _no_final_report_warning(run: Run, step: Step) -> list[str]:
    """R4: closing without a complete (or accepted) final report is allowed, never silent."""
    incident = run.incident
    assert incident is not None
    accepted = any(d.kind == "final-report" and d.state == DL_SATISFIED
                   for d in queries.deadlines(run.session, incident.id))
    if accepted or resolution.final_report_complete(run.session, incident):
        return []
    text = (f"Warning: {incident.id} was closed without a complete final report (R4). "
            "If that was not meant, send /reopen.")
    _event(run, step, EventKind.CLOSED_WITHOUT_FINAL_REPORT,
           "closed without a complete final report")
    subject, body = run.ctx.renderer.render("alert-closed-without-final-report.txt.j2",
                                            incident=incident, sender=run.sender)
    alert_staff(run.session, run.ctx, subject=subject, body=body,
                incident_id=incident.id, inbound_id=run.inbound_id)
    return [text]


def reopen(run: Run, step: Step) -> list[str]:
    incident = run.incident
    assert incident is not None
    if incident.status == "open":
        return [f"{incident.id} was already open."]
    incident.status = "open"
    incident.closed_at = None
    run.session.add(incident)
    kind = cadence.restart(run.session, incident, run.now)
    _event(run, step, EventKind.INCIDENT_REOPENED, "incident reopened")
    return [f"{incident.id} reopened." + (f" The next {kind} is due in one interval."
                                          if kind else "")]


def merge(run: Run, step: Step) -> list[str]:
    incident, other = run.incident, step.other
    assert incident is not None and other is not None
    moved = merging.merge(run.session, incident, other, run.now, run.sender, run.inbound_id,
                          step.command.line)
    repeated = f" ({moved.repeated} listed in both, kept once)" if moved.repeated else ""
    summary = (f"{other.id} merged into this incident: {moved.messages} message(s), "
               f"{moved.events} event(s), {moved.deadlines} deadline(s), "
               f"{moved.certificates} certificate(s){repeated}; {other.id} closed")
    _event(run, step, EventKind.INCIDENT_MERGED, summary)
    return [f"{other.id} was merged into {incident.id}: {moved.messages} message(s), "
            f"{moved.events} event(s), {moved.deadlines} deadline(s), {moved.certificates} "
            f"certificate(s){repeated} moved; {other.id} is closed and points here."]


def status(run: Run, step: Step) -> list[str]:
    if run.incident is not None:
        return incident_status(run.session, run.incident, run.now)
    return overall_status(run.session, run.now)


ACTIONS: dict[tuple[str, str | None], Action] = {
    ("request", "certificate-list"): request,
    ("request", "reports"): request,
    ("request", "final-report"): request,
    ("request", "investigative-report"): request,
    ("request", "info"): request,
    ("notice", "revoke-root"): notice,
    ("exceptional", "on"): exceptional,
    ("exceptional", "off"): exceptional,
    ("require", "third-party-investigator"): require_investigator,
    ("disqualify-audit", None): disqualify_audit,
    ("accept", "final-report"): accept_final_report,
    ("note", None): note,
    ("resolved", None): resolved,
    ("close", None): close,
    ("reopen", None): reopen,
    ("merge", None): merge,
    ("status", None): status,
}
