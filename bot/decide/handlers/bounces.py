"""A bounce of our own mail: link it to the outgoing mail it concerns and mark that mail.

DESIGN.md: bounces of our own mail are parsed (RFC 3464 and the common
non-standard ones), mark that outgoing mail failed, and staff are told.
A report about some of the mail's recipients fails it for those only: the
others have it, and the alert says so. The
link is tried in order of trust: the VERP token of the return path we gave
that mail (envelope recipient, else Delivered-To and friends), else the
returned Message-ID, else the most recent mail we sent to the failed address.

A bounce is never answered. A permanent failure marks the mail failed for
the recipients it names, with the reason (the mail's status then follows
`bot.outbox.verdict`: `failed` once its To has bounced), puts an event in the
incident's timeline and alerts staff (never for a failed alert:
`bot.compose.alerts.NO_ALERT_ON_FAILURE`); a delay, a delivery or a read
receipt is only noted.
"""

from __future__ import annotations

import logging

from sqlmodel import Session, col, select

from bot.context import Context
from bot.decide.classify import Classification
from bot.outbox.render import message_id_for
from bot.outbox.sender import mark_failed
from bot.parse.bounces import BounceReport, parse_bounce, verp_address
from bot.service.analysis import Analysis
from storage.models import OUT_FAILED, Event, InboundMessage, OutboundMessage, comma_list
from storage.rawstore import load_raw

log = logging.getLogger("rootnotify.decide.bounces")

# Linking by recipient address looks at this many of our most recent mails to
# that address: a bounce concerns a recent mail, and the query stays bounded.
RECENT_MAILS_PER_ADDRESS = 20
# The note kept on the inbound row is a summary for the operator's view.
MAX_NOTE_CHARS = 500


def _by_verp(session: Session, ctx: Context, token: str | None) -> OutboundMessage | None:
    if not token:
        return None
    try:
        envelope_from = verp_address(ctx.config.bot.address, token)
    except ValueError:
        return None
    found = session.exec(select(OutboundMessage).where(
        OutboundMessage.envelope_from == envelope_from)).first()
    if found is None:
        # Our tokens also make the Message-ID; an MTA may keep only one of them.
        found = _by_message_id(session, message_id_for(token, ctx.config.bot.address))
    return found


def _by_message_id(session: Session, message_id: str | None) -> OutboundMessage | None:
    if not message_id:
        return None
    return session.exec(select(OutboundMessage).where(
        OutboundMessage.message_id == message_id)).first()


def _by_recipient(session: Session, report: BounceReport) -> OutboundMessage | None:
    for recipient in report.recipients:
        rows = session.exec(
            select(OutboundMessage)
            .where(col(OutboundMessage.recipients).contains(recipient.address))
            .order_by(col(OutboundMessage.id).desc())
            .limit(RECENT_MAILS_PER_ADDRESS)
        )
        for row in rows:
            if recipient.address in row.recipients.split(","):
                return row
    return None


def find_outgoing(session: Session, ctx: Context,
                  report: BounceReport) -> tuple[OutboundMessage | None, str]:
    """The outgoing mail `report` concerns, and how it was found."""
    row = _by_verp(session, ctx, report.verp_token)
    if row is not None:
        return row, "VERP return path"
    row = _by_message_id(session, report.original_message_id)
    if row is not None:
        return row, "returned Message-ID"
    row = _by_recipient(session, report)
    if row is not None:
        return row, "recipient address"
    return None, "not linked"


def _failed_addresses(report: BounceReport) -> str:
    failed = [r for r in report.recipients if r.action == "failed" or r.permanent]
    shown = failed or list(report.recipients)
    return ", ".join(r.address for r in shown) or "(recipients not named)"


def handle_bounce(session: Session, ctx: Context, inbound: InboundMessage, analysis: Analysis,
                  cls: Classification) -> None:
    """Record the bounce; mark the mail it concerns failed when the failure is permanent."""
    envelope_to = comma_list(inbound.envelope_to)
    assert inbound.id is not None
    report = parse_bounce(load_raw(session, inbound.id), analysis.message, envelope_to)
    if report is None:
        inbound.note = f"{cls.reason} (no delivery report found in it)"[:MAX_NOTE_CHARS]
        _timeline(session, inbound, cls.incident.id if cls.incident else None,
                  "bounce-received", f"automatic mail: {cls.reason}")
        return
    row, how = find_outgoing(session, ctx, report)
    incident_id = (row.incident_id if row else None) or (cls.incident.id if cls.incident else None)
    if incident_id:
        inbound.incident_id = incident_id
    if row is None:
        inbound.note = (f"{report.kind} report ({report.reason}); not linked to any mail "
                        f"we sent")[:MAX_NOTE_CHARS]
        log.info("bounce %s not linked to any outgoing mail: %s", inbound.id, report.reason)
        _timeline(session, inbound, incident_id, "bounce-received",
                  f"{report.kind} report not linked to a mail we sent: {report.reason}")
        return

    what = f"{row.kind} {row.message_id}"
    if not report.permanent:
        inbound.note = (f"{report.kind} report about {what} (found by {how}): "
                        f"{report.reason}")[:MAX_NOTE_CHARS]
        _timeline(session, inbound, incident_id, f"bounce-{report.kind}",
                  f"{report.kind} report about {what}: {report.reason}", row.id)
        return

    reason = f"bounced ({_failed_addresses(report)}): {report.reason}"
    failed_for = _ours_that_failed(row, report)
    whole = set(failed_for) == set(comma_list(row.recipients))
    inbound.note = (f"marks {what} failed{'' if whole else ' for ' + ','.join(failed_for)} "
                    f"(found by {how}): {reason}")[:MAX_NOTE_CHARS]
    _timeline(session, inbound, incident_id, "bounce-received",
              f"bounce of {what}: {reason}", row.id)
    if set(failed_for) <= set(comma_list(row.failed_recipients)) or (
            row.status == OUT_FAILED and not row.failed_recipients):
        # A second report about the same failure (or about a mail failed as a
        # whole before recipients were recorded): staff were told already. A
        # mail failed for its To may still fail for a Cc: that is news.
        return
    log.warning("outgoing %s marked failed for %s by bounce %s: %s", row.message_id,
                ",".join(failed_for), inbound.id, reason)
    mark_failed(session, ctx, row, reason, failed_for)


def _ours_that_failed(row: OutboundMessage, report: BounceReport) -> list[str]:
    """The recipients of `row` the report says failed; all of them if it names none.

    A report about an address we did not write to (a contact's forwarding
    target, say) cannot say which of ours it concerns: the mail as a whole.
    """
    named = {r.address.lower() for r in report.recipients
             if r.action == "failed" or r.permanent}
    ours = comma_list(row.recipients)
    return [a for a in ours if a.lower() in named] or ours


def _timeline(session: Session, inbound: InboundMessage, incident_id: str | None, kind: str,
              summary: str, outbound_id: int | None = None) -> None:
    if incident_id is None:
        return
    session.add(Event(incident_id=incident_id, at=inbound.received_at, kind=kind,
                      summary=summary[:MAX_NOTE_CHARS], inbound_id=inbound.id,
                      outbound_id=outbound_id))
