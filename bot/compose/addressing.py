"""Mails about an incident to its CA (threaded), to staff, or to one staff member.

Who gets what is the contract's rule: requests, reminders and notices go to
all of the CA's contacts, in the incident's thread; confirmations and errors
to the staff member who sent the command; escalations, alerts and digests to
every staff address.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from bot.context import Context
from bot.outbox.enqueue import Queued, enqueue
from bot.outbox.render import MailSpec
from storage.models import Incident


def common(ctx: Context) -> dict[str, object]:
    """What every template may use."""
    return {"tz": ctx.config.bot.timezone, "program_name": ctx.program_name,
            "address": ctx.config.bot.address}


def to_ca(session: Session, ctx: Context, incident: Incident, kind: str, template: str,
          inbound_id: int | None = None, **values: object) -> Queued | None:
    """`kind` mail to every contact of the incident's CA, as a reply in the incident's thread."""
    ca = ctx.config.ca_by_name(incident.ca)
    contacts = list(ca.contacts) if ca else []
    subject, body = ctx.renderer.render(template, incident=incident, ca_name=incident.ca,
                                        **common(ctx), **values)
    thread = incident.thread_message_id
    return enqueue(session, ctx, MailSpec(
        kind=kind, to=contacts, subject=subject, body=body, incident_id=incident.id,
        in_reply_to=thread, references=[thread] if thread else [],
        auto_submitted="auto-generated",
    ), inbound_id=inbound_id)


def to_staff(session: Session, ctx: Context, kind: str, template: str,
             incident: Incident | None = None, inbound_id: int | None = None,
             **values: object) -> Queued | None:
    """`kind` mail to every staff address; tagged with the incident when there is one."""
    staff = list(ctx.config.staff.addresses)
    if not staff:
        return None
    subject, body = ctx.renderer.render(template, incident=incident, **common(ctx), **values)
    return enqueue(session, ctx, MailSpec(
        kind=kind, to=staff, subject=subject, body=body,
        incident_id=incident.id if incident else None, auto_submitted="auto-generated",
    ), inbound_id=inbound_id)


def to_sender(session: Session, ctx: Context, kind: str, template: str, sender: str,
              in_reply_to: str | None, references: Sequence[str],
              incident: Incident | None = None, inbound_id: int | None = None,
              **values: object) -> Queued | None:
    """`kind` mail answering one person's mail (a staff member's commands)."""
    subject, body = ctx.renderer.render(template, incident=incident, **common(ctx), **values)
    return enqueue(session, ctx, MailSpec(
        kind=kind, to=[sender], subject=subject, body=body,
        incident_id=incident.id if incident else None, in_reply_to=in_reply_to,
        references=references,
    ), inbound_id=inbound_id)
