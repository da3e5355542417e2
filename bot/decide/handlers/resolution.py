"""An incident resolved (remediated): staff's `/resolved`, a CA's word for it, and what follows.

Ruleset 2026-02 asks for an update every 24 hours "until the incident is
remediated" and the final report "once the incident has been resolved".
Staff decide that moment (`/resolved`); a CA's update saying so is recorded
as a proposal for staff to confirm, never taken as the decision itself.
Resolving ends the daily-update cadence and, where the ruleset gives a
period, opens the final-report deadline from the command's receipt time.
A complete final report ends the daily updates too: nothing is left to update.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session

from bot.compose.alerts import alert_staff
from bot.context import Context
from bot.decide.handlers.proposals import own_text
from bot.decide.incident.deadlines import cancel_open, label, open_deadline
from bot.rules.events import EventKind
from bot.rules.rulesets import get_ruleset
from bot.service.analysis import Analysis
from storage import queries
from storage.models import Event, InboundMessage, Incident, Proposal, comma_list

# The cadence that lasts "until the incident is remediated" (cadence.py opens it).
UNTIL_RESOLVED = ("update",)
# A CA saying, in its own words above the quote, that the incident is over.
CLAIMS_RESOLVED = re.compile(
    r"\b(?:incident|issue|problem)\s+(?:is|has\s+been|was|is\s+now)\s+(?:now\s+)?"
    r"(?:fully\s+|completely\s+)?(?:resolved|remediated)\b"
    r"|\b(?:we\s+consider|we\s+regard)\s+(?:the|this)\s+(?:incident|issue)\s+"
    r"(?:as\s+)?(?:resolved|remediated|closed)\b",
    re.IGNORECASE)
PROPOSAL_PREFIX = "resolved: "


def final_report_complete(session: Session, incident: Incident) -> bool:
    """Every item of the incident's ruleset arrived, over all its final reports (R4)."""
    have: set[str] = set()
    for row in queries.final_reports(session, incident.id):
        have.update(comma_list(row.present))
    return set(get_ruleset(incident.ruleset).report_item_keys()) <= have


def end_updates(session: Session, incident: Incident, now: datetime, why: str,
                inbound_id: int | None = None, command: str | None = None) -> int:
    """Cancel the cadence that lasts until the incident is remediated; the count cancelled."""
    return cancel_open(session, incident, now, why, UNTIL_RESOLVED, inbound_id, command)


def resolve(session: Session, incident: Incident, now: datetime, by: str,
            inbound_id: int | None, command: str) -> list[str]:
    """Staff's `/resolved`: record the moment, end the updates, open the final report."""
    if incident.resolved_at is not None:
        return [f"{incident.id} was already resolved on {incident.resolved_at:%Y-%m-%d %H:%M} UTC."]
    incident.resolved_at = now
    session.add(incident)
    session.add(Event(incident_id=incident.id, at=now, kind=EventKind.INCIDENT_RESOLVED, rule="R4",
                      inbound_id=inbound_id, command=command,
                      summary=f"incident resolved (by {by})"))
    lines = [f"{incident.id} is resolved as of {now:%Y-%m-%d %H:%M} UTC."]
    ended = end_updates(session, incident, now, "the incident is resolved", inbound_id, command)
    if ended:
        lines.append("The 24-hour updates end.")
    for row in queries.open_proposals(session, incident.id):
        if row.summary.startswith(PROPOSAL_PREFIX):
            row.state = "answered"
            session.add(row)
    after = get_ruleset(incident.ruleset).final_report_after_resolved
    open_final = [d for d in queries.open_deadlines(session, incident.id)
                  if d.kind == "final-report"]
    if after is not None and not open_final and not final_report_complete(session, incident):
        row = open_deadline(session, incident, "final-report", now + after, now,
                            requested_by=by, inbound_id=inbound_id, command=command)
        lines.append(f"Opened: {label(row)} (the ruleset's default; "
                     "/request final-report due DATE changes it).")
    return lines


def propose_if_claimed(session: Session, ctx: Context, incident: Incident,
                       inbound: InboundMessage, analysis: Analysis) -> bool:
    """A CA's update that says the incident is resolved: a proposal for staff to confirm."""
    if incident.resolved_at is not None:
        return False
    text = own_text(analysis.body_text)
    if not CLAIMS_RESOLVED.search(text):
        return False
    now = inbound.received_at
    session.add(Proposal(incident_id=incident.id, inbound_id=inbound.id or 0, received_at=now,
                         state="open", summary=f"{PROPOSAL_PREFIX}{text}"[:2_000]))
    session.add(Event(incident_id=incident.id, at=now,
                      kind=EventKind.RESOLUTION_PROPOSED, rule="R4",
                      inbound_id=inbound.id,
                      summary=f"{analysis.message.from_address} says the incident is "
                              "resolved; staff to confirm with /resolved"))
    subject, body = ctx.renderer.render("alert-resolution-proposed.txt.j2", incident=incident,
                                        sender=analysis.message.from_address,
                                        text=text[:1_000])
    alert_staff(session, ctx, subject=subject, body=body,
                incident_id=incident.id, inbound_id=inbound.id)
    return True
