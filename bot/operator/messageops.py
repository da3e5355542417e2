"""What an operator does to one stored message: process it again, drop it, release it.

Every one of them leaves the raw bytes as they are and records who did what
and why: a timeline event (in the message's incident, if it has one) and the
message's note. A dropped message is at its end: neither retried nor
counted as needing a person; `reprocess N` still brings it back.
"""

from __future__ import annotations

import getpass
import json

from sqlmodel import Session

from bot.clock import iso
from bot.context import Context
from bot.errors import OperatorError
from bot.rules.events import EventKind
from storage import queries
from storage.models import (
    STATE_DROPPED,
    STATE_FAILED,
    STATE_PARKED,
    STATE_PROCESSED,
    STATE_STORED,
    Event,
    InboundMessage,
)

# A dropped or released message's note keeps what was there before, up to this.
NOTE_CHARS = 2000
# What `drop` may end: a message that failed or was parked, or sits in quarantine.
DROPPABLE = (STATE_FAILED, STATE_PARKED, STATE_STORED)


def operator_name() -> str:
    """Who runs the command (the login name), for the record."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container)
        return "unknown user"


def _message(session: Session, inbound_id: int) -> InboundMessage:
    inbound = session.get(InboundMessage, inbound_id)
    if inbound is None:
        raise OperatorError(f"no message {inbound_id} (the numbers are in rootnotify status, "
                            "show and quarantine)")
    return inbound


def _record(session: Session, ctx: Context, inbound: InboundMessage, kind: EventKind,
            summary: str, data: dict[str, object]) -> None:
    now = ctx.clock.now()
    inbound.note = (f"{summary} at {iso(now)}" + (f"; before: {inbound.note}"
                                                  if inbound.note else ""))[:NOTE_CHARS]
    session.add(inbound)
    session.add(Event(incident_id=inbound.incident_id, at=now, kind=kind, summary=summary,
                      inbound_id=inbound.id, data=json.dumps(data, ensure_ascii=False)))


def requeue_one(ctx: Context, inbound_id: int) -> None:
    """Put one message back to be processed; a processed one never is (it would act twice)."""
    with ctx.db.write() as session:
        inbound = _message(session, inbound_id)
        if inbound.state == STATE_PROCESSED:
            raise OperatorError(f"message {inbound_id} was processed ({inbound.kind or 'mail'}"
                                f"{' in ' + inbound.incident_id if inbound.incident_id else ''})"
                                "; a processed message is never run again")
        inbound.state = STATE_STORED
        inbound.attempts = 0
        inbound.next_attempt_at = None
        session.add(inbound)


def drop(ctx: Context, inbound_id: int, reason: str, by: str | None = None) -> InboundMessage:
    """End a failed, parked or quarantined message: kept, never retried, recorded who and why."""
    reason = " ".join(reason.split())
    if not reason:
        raise OperatorError("--reason: say why the message is dropped (it is kept on record)")
    who = by or operator_name()
    with ctx.db.write() as session:
        inbound = _message(session, inbound_id)
        if inbound.state == STATE_DROPPED:
            raise OperatorError(f"message {inbound_id} is already dropped: {inbound.note}")
        if inbound.state not in DROPPABLE and not inbound.quarantined:
            raise OperatorError(f"message {inbound_id} was processed; only a failed, parked or "
                                "quarantined message can be dropped")
        previous = "quarantined" if inbound.quarantined else inbound.state
        data: dict[str, object] = {"by": who, "reason": reason, "was": previous,
                                   "last_error": inbound.last_error}
        inbound.state = STATE_DROPPED
        inbound.quarantined = False
        inbound.next_attempt_at = None
        _record(session, ctx, inbound, EventKind.MESSAGE_DROPPED,
                f"message {inbound_id} ({previous}) dropped by {who}: {reason}", data)
        return inbound


def release(ctx: Context, inbound_id: int, incident_id: str | None,
            by: str | None = None) -> InboundMessage:
    """Take a message out of quarantine: into an incident's record as it is, or, without an
    incident, processed again as it would be now (say, after its sender was made a contact)."""
    who = by or operator_name()
    with ctx.db.write() as session:
        inbound = _message(session, inbound_id)
        if not inbound.quarantined:
            raise OperatorError(f"message {inbound_id} is not in quarantine")
        inbound.quarantined = False
        if incident_id is None:
            inbound.state = STATE_STORED
            inbound.attempts = 0
            _record(session, ctx, inbound, EventKind.MESSAGE_RELEASED,
                    f"message {inbound_id} released from quarantine by {who}, to be "
                    "processed again", {"by": who})
            return inbound
        incident = queries.incident(session, incident_id)
        if incident is None:
            raise OperatorError(f"no incident {incident_id}")
        inbound.incident_id = incident.id
        _record(session, ctx, inbound, EventKind.MESSAGE_RELEASED,
                f"message {inbound_id} from {inbound.from_address} released from quarantine "
                f"into {incident.id} by {who}", {"by": who, "incident": incident.id})
        return inbound
