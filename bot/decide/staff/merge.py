"""Staff `/merge INC-…`: two incidents that are one become the one whose thread it is sent in.

The other incident's messages, events, deadlines, notices, proposals, final
reports and certificates move into this one; its answers become earlier
answers here. It is closed with a pointer (`merged_into`) and an event, so
its id still leads somewhere; mail in its thread finds its messages here.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session

from bot.decide.incident.deadlines import close_deadline
from bot.errors import CommandError
from bot.rules.commands import ADMIN
from bot.rules.events import EventKind
from storage import queries
from storage.merging import Moved, move_incident
from storage.models import DL_CANCELLED, Event, Incident

# Requests that stand side by side even when both incidents have one open.
SIDE_BY_SIDE = ("info",)


def other_incident(session: Session, incident: Incident, target: str, prefix: str) -> Incident:
    """The incident `/merge TARGET` names, when it may merge into `incident`; else CommandError."""
    wanted = target.strip().strip("[]").upper()
    if not re.fullmatch(rf"{re.escape(prefix.upper())}-\d{{4}}-\d{{4,}}", wanted):
        raise CommandError(f"'{target[:64]}' is not an incident id ({prefix}-YYYY-NNNN)")
    other = session.get(Incident, wanted)
    if other is None:
        raise CommandError(f"there is no incident {wanted}")
    if other.id == incident.id:
        raise CommandError(f"{wanted} is this incident; name the other one, to merge it here")
    if other.ca != incident.ca:
        raise CommandError(f"{wanted} is an incident of {other.ca}, {incident.id} of "
                           f"{incident.ca}: only one CA's incidents can be merged")
    if other.merged_into:
        raise CommandError(f"{wanted} was merged into {other.merged_into} already")
    return other


def merge(session: Session, incident: Incident, other: Incident, now: datetime,
          sender: str, inbound_id: int | None, line: str) -> Moved:
    """Move `other` into `incident` and close it with the pointer; return what moved."""
    kept_kinds = {d.kind for d in queries.open_deadlines(session, incident.id)}
    for row in queries.open_deadlines(session, other.id):
        if row.kind in kept_kinds and row.kind not in SIDE_BY_SIDE:
            close_deadline(session, row, DL_CANCELLED, now,
                           f"merged into {incident.id}, which has its own", inbound_id, line)
    moved = move_incident(session, other.id, incident.id)
    other = session.get(Incident, other.id) or other
    other.status = "closed"
    other.closed_at = now
    other.merged_into = incident.id
    session.add(other)
    session.add(Event(incident_id=other.id, at=now, kind=EventKind.INCIDENT_MERGED_AWAY, rule=ADMIN,
                      inbound_id=inbound_id, command=line,
                      summary=f"merged into {incident.id} and closed; its messages, events, "
                              f"deadlines and certificates are there (by {sender})"))
    return moved
