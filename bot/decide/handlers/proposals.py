"""A CA's alternative to a notice (M2): recorded, forwarded to staff, open until staff answer.

Staff answer with `/note …` or a new notice in that incident; either marks
every open proposal of the incident answered.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlmodel import Session

from bot.compose.addressing import to_sender, to_staff
from bot.compose.replies import allow_auto_reply
from bot.context import Context
from bot.decide.classify import Classification
from bot.rules.events import EventKind
from bot.service.analysis import Analysis
from storage import queries
from storage.models import Event, InboundMessage, Incident, Proposal

# The proposal's own words, for the digest and `show`; the mail itself is kept whole.
MAX_SUMMARY_CHARS = 2_000
# Where a reply's own text ends: the quote or the "On … wrote:" line before it.
_QUOTE = re.compile(r"^\s*(>|on .{0,200}wrote:\s*$|-{2,}\s*original message)", re.I)


def own_text(body: str) -> str:
    lines = []
    for line in body.splitlines():
        if _QUOTE.match(line):
            break
        lines.append(line)
    return "\n".join(lines).strip()[:MAX_SUMMARY_CHARS]


def handle_proposal(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                    cls: Classification) -> None:
    incident = cls.incident
    assert incident is not None and cls.ca is not None
    now = inbound.received_at
    text = own_text(analysis.body_text)
    session.add(Proposal(incident_id=incident.id, inbound_id=inbound.id or 0, received_at=now,
                         state="open", summary=text))
    session.add(Event(incident_id=incident.id, at=now, kind=EventKind.PROPOSAL_RECEIVED, rule="M2",
                      inbound_id=inbound.id,
                      summary=f"{analysis.message.from_address} proposed an alternative to "
                              f"the notice: {text[:160]}"))
    to_staff(session, ctx, "alert", "proposal-forward.txt.j2", incident=incident,
             inbound_id=inbound.id, sender=analysis.message.from_address, text=text,
             subject_line=analysis.message.subject)
    sender = analysis.message.from_address or ""
    if allow_auto_reply(session, ctx, sender, what="proposal receipt", incident_id=incident.id,
                        inbound_id=inbound.id):
        to_sender(session, ctx, "receipt", "proposal-receipt.txt.j2", sender,
                  analysis.message.message_id, analysis.message.references, incident=incident,
                  inbound_id=inbound.id, ca_name=cls.ca.name, received_at=now)


def answer_open(session: Session, incident: Incident, now: datetime, why: str,
                inbound_id: int | None, command: str | None) -> int:
    rows = queries.open_proposals(session, incident.id)
    for row in rows:
        row.state = "answered"
        session.add(row)
        session.add(Event(incident_id=incident.id, at=now,
                          kind=EventKind.PROPOSAL_ANSWERED, rule="M2",
                          inbound_id=inbound_id, command=command,
                          summary=f"proposal of {row.received_at:%Y-%m-%d %H:%M} UTC "
                                  f"answered: {why}"))
    return len(rows)
