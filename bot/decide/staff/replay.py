"""Whether an authenticated command's signature may count: once, fresh, and where it names.

A signature proves who signed, not when nor where: S/MIME covers the body
only, so the Subject, In-Reply-To and Message-ID around a signed body can be
rewritten by anyone holding one copy (a Cc'd CA, an exported dossier). The
checks, in order, are the policy:

    replay          the signature value was accepted before (table signature_use)
    stale           its signing time (S/MIME signingTime, DKIM t=) lies outside
                    `[staff] signature_window` around the mail's receipt
    wrong-incident  its signed text names incident tags, and the thread's is
                    not among them

A refusal changes nothing, is a timeline event, is answered to the sender
(the address the signature names, so the signer learns of the copy) and is
told to every staff member.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session

from bot.compose.addressing import to_sender
from bot.compose.alerts import alert_staff
from bot.context import Context
from bot.decide.classify import tag_pattern
from bot.decide.staff.auth import AuthResult
from bot.rules.events import EventKind
from storage.models import Event, InboundMessage, Incident, SignatureUse

log = logging.getLogger("rootnotify.decide.replay")

REFUSED_EVENT = EventKind.COMMAND_SIGNATURE_REFUSED


@dataclass(frozen=True)
class Use:
    """One signed command about to count: its message, its incident, what its signature says."""

    inbound: InboundMessage
    incident: Incident | None
    auth: AuthResult


Check = Callable[[Session, Context, Use], str | None]


def _replay(session: Session, ctx: Context, use: Use) -> str | None:
    for digest in use.auth.signature_digests:
        seen = session.get(SignatureUse, digest)
        # The same stored message run again (a retry after a failure) is no replay.
        if seen is not None and seen.inbound_id != use.inbound.id:
            where = f" in {seen.incident_id}" if seen.incident_id else ""
            return (f"replay: this signature was already used by message {seen.inbound_id}"
                    f"{where}, received {seen.used_at:%Y-%m-%d %H:%M} UTC; a signed command "
                    f"counts once")
    return None


def _stale(session: Session, ctx: Context, use: Use) -> str | None:
    signed_at = use.auth.signed_at
    if signed_at is None:
        return None
    window = ctx.config.staff.signature_window
    received = use.inbound.received_at
    if abs(received - signed_at) <= window:
        return None
    return (f"stale: signed at {signed_at:%Y-%m-%d %H:%M} UTC, received "
            f"{received:%Y-%m-%d %H:%M} UTC; a signed command counts only within "
            f"{_hours(window)} h of its signing time")


def _wrong_incident(session: Session, ctx: Context, use: Use) -> str | None:
    if use.incident is None:
        return None
    named = {t.upper() for t in tag_pattern(ctx.config.bot.incident_prefix)
             .findall(use.auth.signed_text)}
    if not named or use.incident.id in named:
        return None
    return (f"wrong incident: the signed text names {', '.join(sorted(named))}, but the mail "
            f"was sent in the thread of {use.incident.id}")


CHECKS: tuple[tuple[str, Check], ...] = (
    ("replay", _replay), ("stale", _stale), ("wrong-incident", _wrong_incident))


def _hours(window: timedelta) -> int:
    return int(window.total_seconds() // 3600)


def refusal(session: Session, ctx: Context, use: Use) -> str | None:
    """The first reason the signature may not count here, or None."""
    for _name, check in CHECKS:
        reason = check(session, ctx, use)
        if reason:
            return reason
    return None


def record_use(session: Session, ctx: Context, use: Use, signer: str) -> None:
    """The signature counted: note each of its values, so a copy is known as one."""
    method = ctx.config.staff.auth
    for digest in use.auth.signature_digests:
        if session.get(SignatureUse, digest) is None:
            session.add(SignatureUse(digest=digest, method=method, inbound_id=use.inbound.id,
                                     incident_id=use.incident.id if use.incident else None,
                                     signer=signer, used_at=use.inbound.received_at))


def refuse(session: Session, ctx: Context, use: Use, sender: str, reason: str,
           reply: dict[str, object]) -> None:
    """Record the refusal, answer the signer with it, and tell staff."""
    inbound, incident = use.inbound, use.incident
    inbound.note = f"signed commands refused: {reason}"[:2000]
    session.add(Event(incident_id=incident.id if incident else None, at=inbound.received_at,
                      kind=REFUSED_EVENT, inbound_id=inbound.id,
                      summary=f"commands from {sender} refused, nothing changed: {reason}"))
    to_sender(session, ctx, "error", "command-refused.txt.j2", reason=reason,
              **reply)  # type: ignore[arg-type]
    where = f"in {incident.id}" if incident else "outside any incident"
    alert_staff(session, ctx,
                subject=f"Signed command refused: {reason.split(':', 1)[0]}",
                body=(f"A mail {where} carried commands with a valid signature of {sender}, "
                      f"and they were refused:\n\n  {reason}\n\nNothing was changed. Someone "
                      f"may hold a copy of a signed staff mail and be sending it again.\n\n"
                      f"Message-ID: {inbound.message_id}\n"
                      f"Envelope sender: {inbound.envelope_from or '(none)'}\n"),
                incident_id=incident.id if incident else None, inbound_id=inbound.id)
    log.warning("message %s: signed commands from %s refused: %s", inbound.id, sender, reason)
