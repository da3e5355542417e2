"""Put a rendered mail into the outbox, inside the caller's transaction.

The row is the promise: it is written in the same transaction as the state
change that caused it, and the sender delivers it later, at least once, with
the Message-ID fixed here. When `[outgoing] signing_key` is configured the
mail is S/MIME-signed here, at compose time, so the stored bytes are exactly
what is sent (every retry sends the same signed bytes, same Message-ID).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import insert
from sqlmodel import Session

from bot.context import Context
from bot.outbox.render import MailSpec, compose
from bot.outbox.signing import sign_message
from storage.models import OUT_QUEUED, Event, OutboundMessage

log = logging.getLogger("rootnotify.outbox")


@dataclass
class Queued:
    """What callers learn of a queued mail: its row, Message-ID and recipients."""

    message_id: str
    recipients: str  # comma-separated, as in the row
    id: int = 0


def enqueue(session: Session, ctx: Context, spec: MailSpec,
            inbound_id: int | None = None) -> Queued | None:
    """Compose `spec` and add it to the outbox; None when it has no valid recipient."""
    now = ctx.clock.now()  # the decision's time: a mail's receipt, or the scheduler's now
    # Queued for real at the process's time; due at once for a `tick --now` at
    # or after the decision, however far that is from the process's clock.
    queued = (ctx.process_clock or ctx.clock).now()
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
    data = composed.data
    trust = ctx.trust
    if trust.signing_key is not None and trust.signing_certificate is not None:
        # compose() writes bodies as quoted-printable and attachments as base64,
        # CRLF, lines under 80 octets: the 7-bit form sign_message requires.
        data = sign_message(data, certificate=trust.signing_certificate,
                            private_key=trust.signing_key,  # type: ignore[arg-type]
                            chain=trust.signing_chain)
    row = Queued(message_id=composed.message_id, recipients=",".join(composed.recipients))
    # One INSERT of the row alone, for its id, on the session's connection: an
    # ORM object (or the session's execute) here cost a flush of the whole
    # transaction's pending rows, ~10% of acting on a new incident
    # (bench/intake.py). The incident it names was flushed when it was made.
    table = OutboundMessage.__table__
    row.id = session.connection().execute(insert(table).values(  # type: ignore[arg-type]
        message_id=composed.message_id,
        incident_id=spec.incident_id,
        kind=spec.kind,
        envelope_from=composed.envelope_from,
        recipients=row.recipients,
        subject=composed.subject,
        data=data,
        status=OUT_QUEUED,
        attempts=0,
        created_at=queued,
        next_attempt_at=min(now, queued),
        inbound_id=inbound_id,
    )).inserted_primary_key[0]
    if spec.incident_id:
        session.add(Event(
            incident_id=spec.incident_id, at=now, kind=f"mail-queued:{spec.kind}",
            summary=f"{spec.kind} queued to {', '.join(composed.recipients)}",
            outbound_id=row.id,
        ))
    log.info("queued %s %s for %s to %s", spec.kind, composed.message_id,
             spec.incident_id or "-", row.recipients,
             extra={"incident": spec.incident_id, "outbound": row.id,
                    "message_id": composed.message_id})
    return row
