"""From a classified message to the handler of its kind: the routing table, as data."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from sqlmodel import Session

from bot.clock import FixedClock
from bot.compose.alerts import alert_staff
from bot.compose.replies import send_blank_form
from bot.context import Context
from bot.decide.classify import ROLE_CA, ROLE_UNKNOWN, Classification, classify
from bot.decide.handlers.bounces import handle_bounce
from bot.decide.handlers.certificates import handle_certificate_list
from bot.decide.handlers.disclosure import record_disclosure
from bot.decide.handlers.duplicates import first_with_form, form_digest, record_duplicate
from bot.decide.handlers.formchecks import with_ca_name
from bot.decide.handlers.incidents import open_incident
from bot.decide.handlers.limits import report_limits
from bot.decide.handlers.proposals import handle_proposal
from bot.decide.handlers.reports import handle_final_report
from bot.decide.handlers.signatures import alert_on_signature
from bot.decide.handlers.updates import handle_update
from bot.decide.staff.commands import handle_command
from bot.service.analysis import Analysis
from storage.models import Event, InboundMessage

log = logging.getLogger("rootnotify.decide")

Handler = Callable[[Session, Context, InboundMessage, Analysis, Classification], None]


def _notification(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                  cls: Classification) -> None:
    assert analysis.form is not None and cls.ca is not None
    digest = form_digest(with_ca_name(analysis.form, cls.ca.name))
    first = first_with_form(session, cls.ca.name, digest, inbound)
    if first is not None:  # the same form re-sent: recorded there, opens nothing
        record_duplicate(session, ctx, first, inbound, analysis)
        return
    incident = open_incident(session, ctx, inbound, analysis, cls)
    inbound.incident_id = incident.id


def _form_request(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                  cls: Classification) -> None:
    assert cls.ca is not None
    inbound.note = "no form found; the blank form was sent"
    send_blank_form(session, ctx, inbound, analysis, cls.ca)


def _record_only(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                 cls: Classification) -> None:
    """Kept and shown in the timeline; nobody is answered (auto-replies, bounces, stray mail)."""
    inbound.note = cls.reason
    if cls.role == ROLE_UNKNOWN:
        inbound.quarantined = True
        log.info("message %s from %s quarantined: %s", inbound.id,
                 analysis.message.from_address, cls.reason)
        if cls.doubtful_sender:
            alert_staff(session, ctx, subject="Quarantined: a From that is not its sender",
                        body=(f"A mail was quarantined, not recorded as its From's:\n\n"
                              f"  {cls.reason}\n\nIt changed nothing and was not answered. "
                              f"`rootnotify quarantine` lists it (message {inbound.id}).\n\n"
                              f"Subject: {analysis.message.subject}\n"
                              f"Message-ID: {analysis.message.message_id}\n"),
                        incident_id=None, inbound_id=inbound.id)
        return
    if cls.incident is not None:
        session.add(Event(incident_id=cls.incident.id, at=inbound.received_at,
                          kind=f"{cls.kind}-received", inbound_id=inbound.id,
                          summary=f"{cls.kind} from {analysis.message.from_address}: "
                                  f"{cls.reason}"))
    if cls.role == ROLE_CA and cls.incident is not None and cls.ca is not None \
            and cls.incident.ca != cls.ca.name:
        alert_staff(session, ctx,
                    subject=f"{cls.ca.name} contact wrote in {cls.incident.ca}'s incident",
                    body=(f"{analysis.message.from_address} ({cls.ca.name}) sent a mail in the "
                          f"thread of {cls.incident.id}, an incident of {cls.incident.ca}.\n"
                          f"It was recorded and changed nothing.\n\n"
                          f"Subject: {analysis.message.subject}\n"),
                    incident_id=cls.incident.id, inbound_id=inbound.id)


# kind → handler. Capabilities register their kinds here.
HANDLERS: dict[str, Handler] = {
    "notification": _notification,
    "update": handle_update,
    "certificate-list": handle_certificate_list,
    "final-report": handle_final_report,
    "proposal": handle_proposal,
    "form-request": _form_request,
    "command": handle_command,
    "auto-reply": _record_only,
    "bounce": handle_bounce,
    "other": _record_only,
}

# What applies to every message after its kind's handler, in this order: tell
# a CA what was not read (limits), tell staff of a bad signature, record a
# public disclosure link (2026-02).
FOLLOW_UPS: tuple[Handler, ...] = (report_limits, alert_on_signature, record_disclosure)
# What applies before the handler of a mail in an incident, so that its
# receipt can say it: the public disclosure link (recorded once either way).
BEFORE: tuple[Handler, ...] = (record_disclosure,)


def act(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis) -> None:
    """Classify and act, inside the caller's transaction, at the time the mail was received.

    Every decision takes "now" from the mail (DESIGN: time comes from the
    mail): its due dates, its events and the mail it queues are stamped with
    its receipt time, so `ingest` of old mail, a backlog or `reprocess` give
    what live SMTP gave, and a `tick --now` after the receipt sends the answers.
    """
    ctx = replace(ctx, clock=FixedClock(inbound.received_at),
                  process_clock=ctx.process_clock or ctx.clock)
    message = analysis.message
    inbound.from_address = message.from_address
    inbound.subject = message.subject[:500] if message.subject else None
    inbound.date_header = message.date
    inbound.smime = analysis.smime.status
    inbound.smime_reason = analysis.smime.reason
    cls = classify(session, ctx.config, analysis)
    inbound.kind = cls.kind
    inbound.sender_role = cls.role
    inbound.ca = cls.ca.name if cls.ca else None
    if cls.incident is not None:
        inbound.incident_id = cls.incident.id
    if cls.incident is not None:
        for step in BEFORE:
            step(session, ctx, inbound, analysis, cls)
    HANDLERS[cls.kind](session, ctx, inbound, analysis, cls)
    for follow_up in FOLLOW_UPS:
        follow_up(session, ctx, inbound, analysis, cls)
    log.info("message %s (%s) from %s: %s%s", inbound.id, message.message_id,
             message.from_address, cls.kind,
             f" in {inbound.incident_id}" if inbound.incident_id else "",
             extra={"incident": inbound.incident_id, "inbound": inbound.id,
                    "message_id": message.message_id})
