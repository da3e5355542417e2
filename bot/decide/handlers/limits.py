"""A mail that passed a parsing limit: record what was not read and tell the CA contact.

`bot.parse.mail.message.parse_message` lists the limits passed (size, MIME parts,
depth, header fields and lines, attachments); this records them on the
message and in its incident's timeline, and sends a CA contact a receipt
saying what was not read. Automatic mail, staff and strangers get nothing.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from bot.compose.replies import allow_auto_reply
from bot.context import Context
from bot.decide.classify import ROLE_CA, Classification
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.rules.events import EventKind
from bot.service.analysis import Analysis
from storage.models import Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.limits")

# The message's note is a summary for the operator's view, not the whole story.
MAX_NOTE_CHARS = 1_000


def report_limits(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                  cls: Classification) -> None:
    exceeded = analysis.message.limits_exceeded
    if not exceeded:
        return
    summary = "not read, limits passed: " + "; ".join(exceeded)
    inbound.note = (f"{inbound.note}; {summary}" if inbound.note else summary)[:MAX_NOTE_CHARS]
    log.warning("message %s passed limits: %s", inbound.id, "; ".join(exceeded))
    incident = session.get(Incident, inbound.incident_id) if inbound.incident_id else None
    if incident is not None:
        session.add(Event(incident_id=incident.id, at=inbound.received_at,
                          kind=EventKind.LIMITS_EXCEEDED, inbound_id=inbound.id,
                          summary=summary[:MAX_NOTE_CHARS]))
    if cls.role != ROLE_CA or cls.ca is None or analysis.automatic.automatic:
        return
    if incident is not None and incident.ca != cls.ca.name:
        return  # another CA's incident: recorded, nothing answered
    sender = analysis.message.from_address or ""
    if not allow_auto_reply(session, ctx, sender, what="receipt of what was not read",
                            incident_id=incident.id if incident else None,
                            inbound_id=inbound.id):
        return
    subject, body = ctx.renderer.render(
        "limits-receipt.txt.j2", incident=incident, ca_name=cls.ca.name,
        received_at=inbound.received_at, subject=analysis.message.subject[:120],
        exceeded=list(exceeded), tz=ctx.config.bot.timezone, program_name=ctx.program_name,
        address=ctx.config.bot.address)
    enqueue(session, ctx, MailSpec(
        kind="receipt", to=[sender], subject=subject, body=body,
        incident_id=incident.id if incident else None,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
    ), inbound_id=inbound.id)
