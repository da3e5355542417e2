"""Alerts to staff about things a person must know: failed deliveries, forged or stray mail."""

from __future__ import annotations

import logging

from sqlmodel import Session

from bot.context import Context
from bot.outbox.enqueue import enqueue
from bot.outbox.render import MailSpec
from bot.rules.events import EventKind
from storage.models import Event, OutboundMessage, comma_list

log = logging.getLogger("rootnotify.decide.alerts")

# Kinds whose own failure must not trigger another alert (a loop between two
# failing mails to staff would never end).
NO_ALERT_ON_FAILURE = ("alert", "escalation", "digest")


def alert_staff(session: Session, ctx: Context, subject: str, body: str,
                incident_id: str | None = None, inbound_id: int | None = None) -> None:
    staff = list(ctx.config.staff.addresses)
    if not staff:
        log.warning("no staff address configured; alert not sent: %s", subject)
        return
    enqueue(session, ctx, MailSpec(kind="alert", to=staff, subject=subject, body=body,
                                   incident_id=incident_id, auto_submitted="auto-generated"),
            inbound_id=inbound_id)


def delivery_failed(session: Session, ctx: Context, row: OutboundMessage, error: str,
                    failed_for: list[str]) -> None:
    """Tell the timeline and staff that `row` did not reach `failed_for`.

    When others of its recipients have it, the alert says so: staff then
    know the CA was told, and which address to fix.
    """
    now = ctx.clock.now()
    not_reached = {*failed_for, *comma_list(row.failed_recipients),
                   *comma_list(row.retry_recipients)}
    reached = [r for r in comma_list(row.recipients) if r not in not_reached]
    to = ",".join(failed_for)
    if row.incident_id:
        session.add(Event(incident_id=row.incident_id, at=now, kind=EventKind.MAIL_FAILED,
                          outbound_id=row.id,
                          summary=f"{row.kind} {row.message_id} to {to} failed: "
                                  f"{error[:200]}"))
    if row.kind in NO_ALERT_ON_FAILURE:
        return
    subject, body = ctx.renderer.render(
        "alert-delivery-failed.txt.j2", kind=row.kind, message_id=row.message_id,
        subject=row.subject, to=to, error=error, reached=reached)
    alert_staff(session, ctx, subject=subject, body=body, incident_id=row.incident_id)
