"""The mails that follow from a decision: acknowledgements, receipts, the blank form.

Who gets what is the contract's rule: the acknowledgement goes to the sender
with the CA's other contacts in Cc; receipts to the sender; staff alerts to
every staff address. Automatic replies to one address are capped per day.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlmodel import Session

from bot.analysis import Analysis
from bot.config import CaConfig
from bot.context import Context
from bot.decide.outmail import common
from bot.decide.timeliness import Timeliness
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.rules.rulesets import FORM_FIELDS_BY_KEY
from storage.counters import take_auto_reply
from storage.models import Event, InboundMessage, Incident

log = logging.getLogger("rootnotify.decide.mail")


def allow_auto_reply(session: Session, ctx: Context, address: str) -> bool:
    """Count one automatic reply to `address` today; False once the daily cap is reached."""
    day = ctx.clock.now().astimezone(ctx.config.bot.timezone).date().isoformat()
    cap = ctx.config.bot.max_auto_replies_per_day
    if not take_auto_reply(session, address, day, cap):
        log.warning("automatic reply to %s suppressed: %d already today", address, cap)
        return False
    return True


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
                    missing: Sequence[str]) -> None:
    sender = analysis.message.from_address or ""
    if not allow_auto_reply(session, ctx, sender):
        session.add(Event(incident_id=incident.id, at=ctx.clock.now(), kind="reply-suppressed",
                          summary=f"acknowledgement to {sender} suppressed by the daily cap"))
        return
    form = analysis.form
    problems = list(form.problems) if form else []
    subject, body = ctx.renderer.render(
        "acknowledgement.txt.j2", incident=incident, ca_name=ca.name,
        verdict=r1.verdict(), clock_note=r1.explanation(),
        source=form.source if form else "the message",
        category_note=form.category_note if form else None,
        fields=_field_rows(analysis), missing=_labels(missing), problems=problems,
        disclosure_required=ctx.config.bot.ruleset.public_disclosure_required,
        **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="acknowledgement", to=[sender], cc=[c for c in ca.contacts if c != sender],
        subject=subject, body=body, incident_id=incident.id,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
    ), inbound_id=inbound.id)


def new_incident_alert(session: Session, ctx: Context, incident: Incident,
                       inbound: InboundMessage, analysis: Analysis, r1: Timeliness,
                       missing: Sequence[str]) -> None:
    staff = list(ctx.config.staff.addresses)
    if not staff:
        return
    subject, body = ctx.renderer.render(
        "alert-new-incident.txt.j2", incident=incident, sender=analysis.message.from_address,
        verdict=r1.verdict(), smime=f"{analysis.smime.status} ({analysis.smime.reason})",
        fields=_field_rows(analysis), missing=_labels(missing), **common(ctx))
    enqueue(session, ctx, MailSpec(kind="alert", to=staff, subject=subject, body=body,
                                   incident_id=incident.id, auto_submitted="auto-generated"),
            inbound_id=inbound.id)


def update_receipt(session: Session, ctx: Context, incident: Incident, inbound: InboundMessage,
                   analysis: Analysis, ca: CaConfig, changes: Sequence[object],
                   missing: Sequence[str], satisfied: Sequence[str]) -> None:
    sender = analysis.message.from_address or ""
    if not allow_auto_reply(session, ctx, sender):
        return
    problems = list(analysis.form.problems) if analysis.form else []
    subject, body = ctx.renderer.render(
        "update-receipt.txt.j2", incident=incident, ca_name=ca.name,
        received_at=inbound.received_at, changes=changes, missing=list(missing),
        satisfied=list(satisfied), problems=problems, **common(ctx))
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
    if not allow_auto_reply(session, ctx, sender):
        return
    form_text = blank_form_text(ctx)
    subject, body = ctx.renderer.render("form.txt.j2", ca_name=ca.name, form_text=form_text,
                                        **common(ctx))
    enqueue(session, ctx, MailSpec(
        kind="form", to=[sender], subject=subject, body=body,
        in_reply_to=analysis.message.message_id, references=analysis.message.references,
        attachments=[("notification-form.txt", "text/plain", form_text.encode("utf-8"))],
    ), inbound_id=inbound.id)
