"""The mails that follow from a decision: acknowledgements, receipts, the blank form.

Who gets what is the contract's rule: the acknowledgement goes to the sender
with the CA's other contacts in Cc; receipts to the sender; staff alerts to
every staff address. Automatic replies to one address are capped per day.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from sqlmodel import Session

from bot.compose.addressing import common
from bot.config import CaConfig
from bot.context import Context
from bot.decide.incident.timeliness import Timeliness
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.rules.events import EventKind
from bot.rules.rulesets import FORM_FIELDS_BY_KEY
from bot.service.analysis import Analysis
from storage.counters import count_auto_reply, take_auto_reply
from storage.models import Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.mail")


SUPPRESSED_EVENT = EventKind.REPLY_SUPPRESSED


def _today(ctx: Context) -> str:
    return ctx.clock.now().astimezone(ctx.config.bot.timezone).date().isoformat()


def allow_auto_reply(session: Session, ctx: Context, address: str, *,
                     what: str = "automatic reply", incident_id: str | None = None,
                     inbound_id: int | None = None) -> bool:
    """Count one automatic reply to `address` today; False once past the daily cap.

    The cap is a loop guard for replies in threads: a reply it suppresses is
    recorded (an event naming the address, for the digest and `status`).
    """
    cap = ctx.config.bot.max_auto_replies_per_day
    if take_auto_reply(session, address, _today(ctx), cap):
        return True
    log.warning("%s to %s suppressed: the daily cap of %d is reached", what, address, cap)
    session.add(Event(incident_id=incident_id, at=ctx.clock.now(), kind=SUPPRESSED_EVENT,
                      inbound_id=inbound_id, data=json.dumps({"address": address, "what": what}),
                      summary=f"{what} to {address} suppressed by the daily cap of {cap}"))
    return False


def suppressed_before(session: Session, ctx: Context, address: str) -> int:
    """Count a reply that is sent whatever the cap; how many to `address` were suppressed today."""
    count = count_auto_reply(session, address, _today(ctx))
    return max(0, count - 1 - ctx.config.bot.max_auto_replies_per_day)


def _field_rows(analysis: Analysis) -> list[dict[str, object]]:
    form = analysis.form
    if form is None:
        return []
    rows = []
    for key, value in form.fields.items():
        label = FORM_FIELDS_BY_KEY[key].label if key in FORM_FIELDS_BY_KEY else key
        # `at`: a time as understood, shown beside what the CA wrote.
        rows.append({"key": key, "label": label, "value": value.value, "note": value.note,
                     "at": value.at})
    return rows


def _labels(keys: Sequence[str]) -> list[str]:
    return [FORM_FIELDS_BY_KEY[k].label if k in FORM_FIELDS_BY_KEY else k for k in keys]


def acknowledgement(session: Session, ctx: Context, incident: Incident, inbound: InboundMessage,
                    analysis: Analysis, ca: CaConfig, r1: Timeliness,
                    missing: Sequence[str], flags: Sequence[str] = ()) -> int:
    """Queue the acknowledgement; return how many replies to its sender were capped today.

    Never capped itself: a notification is no loop, and a flood of forged
    mail in the contact's name must not silence the answer to a real one.
    """
    sender = analysis.message.from_address or ""
    suppressed = suppressed_before(session, ctx, sender)
    form = analysis.form
    problems = list(form.problems) if form else []
    subject, body = ctx.renderer.render(
        "acknowledgement.txt.j2", incident=incident, ca_name=ca.name,
        verdict=r1.verdict(), clock_note=r1.explanation(),
        source=form.source if form else "the message",
        category_note=form.category_note if form else None,
        fields=_field_rows(analysis), missing=_labels(missing), problems=problems,
        flags=list(flags), disclosure_required=ctx.config.bot.ruleset.public_disclosure_required,
        **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="acknowledgement", to=[sender], cc=[c for c in ca.contacts if c != sender],
        subject=subject, body=body, incident_id=incident.id,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
    ), inbound_id=inbound.id)
    return suppressed


def new_incident_alert(session: Session, ctx: Context, incident: Incident,
                       inbound: InboundMessage, analysis: Analysis, r1: Timeliness,
                       missing: Sequence[str], flags: Sequence[str] = (),
                       suppressed: int = 0) -> None:
    staff = list(ctx.config.staff.addresses)
    if not staff:
        return
    subject, body = ctx.renderer.render(
        "alert-new-incident.txt.j2", incident=incident, sender=analysis.message.from_address,
        verdict=r1.verdict(), smime=f"{analysis.smime.status} ({analysis.smime.reason})",
        fields=_field_rows(analysis), missing=_labels(missing), flags=list(flags),
        suppressed=suppressed, cap=ctx.config.bot.max_auto_replies_per_day, **common(ctx))
    enqueue(session, ctx, MailSpec(kind="alert", to=staff, subject=subject, body=body,
                                   incident_id=incident.id, auto_submitted="auto-generated"),
            inbound_id=inbound.id)


def update_receipt(session: Session, ctx: Context, incident: Incident, inbound: InboundMessage,
                   analysis: Analysis, ca: CaConfig, changes: Sequence[object],
                   missing: Sequence[str], satisfied: Sequence[str],
                   recorded: Sequence[str] = ()) -> None:
    sender = analysis.message.from_address or ""
    if not allow_auto_reply(session, ctx, sender, what="update receipt",
                            incident_id=incident.id, inbound_id=inbound.id):
        return
    form = analysis.answers or analysis.form
    problems = list(form.problems) if form else []
    subject, body = ctx.renderer.render(
        "update-receipt.txt.j2", incident=incident, ca_name=ca.name,
        received_at=inbound.received_at, changes=changes, missing=list(missing),
        satisfied=list(satisfied), problems=problems, recorded=list(recorded), **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="receipt", to=[sender], subject=subject, body=body, incident_id=incident.id,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
    ), inbound_id=inbound.id)


def blank_form_text(ctx: Context) -> str:
    return ctx.renderer.render_text("notification-form.txt.j2",
                                    fields=ctx.config.bot.ruleset.form_fields,
                                    address=ctx.config.bot.address)


def send_blank_form(session: Session, ctx: Context, inbound: InboundMessage,
                    analysis: Analysis, ca: CaConfig) -> None:
    sender = analysis.message.from_address or ""
    if not allow_auto_reply(session, ctx, sender, what="blank form", inbound_id=inbound.id):
        return
    form_text = blank_form_text(ctx)
    subject, body = ctx.renderer.render("form.txt.j2", ca_name=ca.name, form_text=form_text,
                                        **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="form", to=[sender], subject=subject, body=body,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
        attachments=[("notification-form.txt", "text/plain", form_text.encode("utf-8"))],
    ), inbound_id=inbound.id)
