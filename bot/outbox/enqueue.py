"""Put a rendered mail into the outbox, inside the caller's transaction.

The row is the promise: it is written in the same transaction as the state
change that caused it, and the sender delivers it later, at least once, with
the Message-ID fixed here.
"""

from __future__ import annotations

import logging

from sqlmodel import Session

from bot.context import Context
from bot.outbox.render import MailSpec, compose
from storage.models import OUT_QUEUED, Event, OutboundMessage

log = logging.getLogger("rootnotify.outbox")


def enqueue(session: Session, ctx: Context, spec: MailSpec,
            inbound_id: int | None = None) -> OutboundMessage | None:
    """Compose `spec` and add it to the outbox; None when it has no valid recipient."""
    now = ctx.clock.now()
    composed = compose(
        spec,
        from_header=ctx.config.outgoing.from_address,
        bot_address=ctx.config.bot.address,
        loop_marker=ctx.config.bot.loop_marker,
        at=now,
    )
    if not composed.recipients:
        log.warning("%s mail for %s has no valid recipient; not queued",
                    spec.kind, spec.incident_id or "-")
        return None
    row = OutboundMessage(
        message_id=composed.message_id,
        incident_id=spec.incident_id,
        kind=spec.kind,
        envelope_from=composed.envelope_from,
        recipients=",".join(composed.recipients),
        subject=composed.subject,
        data=composed.data,
        status=OUT_QUEUED,
        created_at=now,
        next_attempt_at=now,
        inbound_id=inbound_id,
    )
    session.add(row)
    session.flush()
    if spec.incident_id:
        session.add(Event(
            incident_id=spec.incident_id, at=now, kind=f"mail-queued:{spec.kind}",
            summary=f"{spec.kind} queued to {', '.join(composed.recipients)}",
            outbound_id=row.id,
        ))
    log.info("queued %s %s for %s to %s", spec.kind, composed.message_id,
             spec.incident_id or "-", ",".join(composed.recipients))
    return row
