"""A notification re-sent: the same CA's same form within a day is recorded in the first incident.

A CA that does not see its acknowledgement (spam folder, a client that sends
again, a colleague mailing the same form) sends the same form under a new
Message-ID; the intake's dedup (Message-ID plus content hash) cannot know.
Such a mail is recorded in the incident the form first opened and staff are
told; it opens nothing. Anything else is a new incident: a form with any
answer changed, or the same form a day or more later (a loop guard must never
swallow a new incident); staff join two incidents with `/merge` when one
slipped through.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import timedelta

from sqlmodel import Session, col, select

from bot.compose.alerts import alert_staff
from bot.context import Context
from bot.parse.forms.notification import ParsedForm
from bot.rules.events import EventKind
from bot.service.analysis import Analysis
from storage.models import Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.duplicates")

# The same form a day apart may be a second incident of the same shape (a
# recurring misconfiguration); within a day it is the first one re-sent.
DUPLICATE_WINDOW = timedelta(days=1)
DUPLICATE_EVENT = EventKind.DUPLICATE_NOTIFICATION


def form_digest(form: ParsedForm) -> str:
    """SHA-256 of the form's answers, key by key, with runs of white space made one space.

    Re-sending may re-wrap lines or change line ends; it does not change an answer.
    """
    answers = {key: " ".join(field.value.split()) for key, field in form.fields.items()}
    return hashlib.sha256(json.dumps(answers, sort_keys=True).encode()).hexdigest()


def first_with_form(session: Session, ca: str, digest: str,
                    inbound: InboundMessage) -> Incident | None:
    """The incident of `ca` this form opened within a day of the mail's receipt, if any.

    One merged into another is followed to that one, where its mail now is.
    """
    at = inbound.received_at
    found = session.exec(select(Incident).where(
        Incident.ca == ca, Incident.form_digest == digest,
        col(Incident.notified_at) > at - DUPLICATE_WINDOW,
        col(Incident.notified_at) < at + DUPLICATE_WINDOW,
    ).order_by(col(Incident.notified_at))).first()
    seen: set[str] = set()
    while found is not None and found.merged_into and found.id not in seen:
        seen.add(found.id)
        found = session.get(Incident, found.merged_into)
    return found


def record_duplicate(session: Session, ctx: Context, incident: Incident,
                     inbound: InboundMessage, analysis: Analysis) -> None:
    """The re-sent form: a timeline event of the first incident, and staff told of both mails."""
    first = session.exec(select(InboundMessage).where(
        InboundMessage.incident_id == incident.id, InboundMessage.kind == "notification",
        col(InboundMessage.id) != inbound.id,
    ).order_by(col(InboundMessage.received_at), col(InboundMessage.id))).first()
    earlier = (f"message {first.id} ({first.message_id}), received "
               f"{first.received_at:%Y-%m-%d %H:%M} UTC") if first else "its first notification"
    this = f"message {inbound.id} ({analysis.message.message_id})"
    inbound.incident_id = incident.id
    inbound.note = f"the form of {incident.id} again, within a day: recorded there, nothing opened"
    session.add(Event(
        incident_id=incident.id, at=inbound.received_at, kind=DUPLICATE_EVENT, rule="R1",
        inbound_id=inbound.id,
        summary=f"the same form again from {analysis.message.from_address}: {this}, "
                f"as {earlier}; no new incident",
        data=json.dumps({"message_id": analysis.message.message_id,
                         "first_message_id": first.message_id if first else None}),
    ))
    alert_staff(
        session, ctx, subject=f"[{incident.id}] The same notification again",
        body=(f"{analysis.message.from_address} ({incident.ca}) sent the form of {incident.id} "
              f"again under a new Message-ID:\n\n"
              f"  first: {earlier}\n  again: {this}, received "
              f"{inbound.received_at:%Y-%m-%d %H:%M} UTC\n\n"
              f"Every answer is the same, within a day, so it was recorded in {incident.id} "
              f"and opened no incident; the CA was not answered again.\n"
              f"If it is a new incident after all, tell the CA to send it with what differs.\n"
              f"Two incidents that are one: reply in the thread of the one to keep with\n"
              f"  /merge INC-YYYY-NNNN\n"),
        incident_id=incident.id, inbound_id=inbound.id)
    log.info("message %s: the form of %s again, recorded there", inbound.id, incident.id,
             extra={"incident": incident.id, "inbound": inbound.id,
                    "message_id": analysis.message.message_id})
