"""Read queries used by the views and the command line; all SQL of reads lives here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlmodel import Session, col, func, select

from storage.models import (
    DL_OPEN,
    OUT_QUEUED,
    STATE_DROPPED,
    STATE_FAILED,
    STATE_PARKED,
    STATE_PROCESSED,
    Certificate,
    Deadline,
    Domain,
    Event,
    FinalReport,
    FormValue,
    ImapState,
    InboundMessage,
    Incident,
    Meta,
    Notice,
    OutboundMessage,
    Proposal,
    RawMessage,
    ReminderLog,
)


def incidents(session: Session) -> Sequence[Incident]:
    return session.exec(select(Incident).order_by(col(Incident.year), col(Incident.seq))).all()


def incident(session: Session, incident_id: str) -> Incident | None:
    return session.get(Incident, incident_id.strip().upper())


def form_values(session: Session, incident_id: str) -> Sequence[FormValue]:
    return session.exec(select(FormValue).where(FormValue.incident_id == incident_id)
                        .order_by(col(FormValue.recorded_at), col(FormValue.id))).all()


def deadlines(session: Session, incident_id: str) -> Sequence[Deadline]:
    return session.exec(select(Deadline).where(Deadline.incident_id == incident_id)
                        .order_by(col(Deadline.due_at), col(Deadline.id))).all()


def next_due(session: Session, incident_id: str) -> datetime | None:
    return session.exec(select(func.min(Deadline.due_at)).where(
        Deadline.incident_id == incident_id, Deadline.state == DL_OPEN)).one()


def overdue_count(session: Session, incident_id: str, now: datetime) -> int:
    return session.exec(select(func.count()).select_from(Deadline).where(
        Deadline.incident_id == incident_id, Deadline.state == DL_OPEN,
        col(Deadline.due_at) <= now)).one()


def events(session: Session, incident_id: str) -> Sequence[Event]:
    return session.exec(select(Event).where(Event.incident_id == incident_id)
                        .order_by(col(Event.at), col(Event.id))).all()


def inbound_for(session: Session, incident_id: str) -> Sequence[InboundMessage]:
    return session.exec(select(InboundMessage).where(InboundMessage.incident_id == incident_id)
                        .order_by(col(InboundMessage.received_at))).all()


def outbound_for(session: Session, incident_id: str) -> Sequence[OutboundMessage]:
    return session.exec(select(OutboundMessage).where(OutboundMessage.incident_id == incident_id)
                        .order_by(col(OutboundMessage.created_at),
                                  col(OutboundMessage.id))).all()


def certificate_counts(session: Session, incident_id: str) -> tuple[int, int]:
    certs = session.exec(select(func.count()).select_from(Certificate)
                         .where(Certificate.incident_id == incident_id)).one()
    domains = session.exec(select(func.count()).select_from(Domain)
                           .where(Domain.incident_id == incident_id)).one()
    return certs, domains


def notices(session: Session, incident_id: str) -> Sequence[Notice]:
    return session.exec(select(Notice).where(Notice.incident_id == incident_id)
                        .order_by(col(Notice.sent_at))).all()


def proposals(session: Session, incident_id: str) -> Sequence[Proposal]:
    return session.exec(select(Proposal).where(Proposal.incident_id == incident_id)
                        .order_by(col(Proposal.received_at))).all()


def final_reports(session: Session, incident_id: str) -> Sequence[FinalReport]:
    return session.exec(select(FinalReport).where(FinalReport.incident_id == incident_id)
                        .order_by(col(FinalReport.received_at))).all()


def quarantined(session: Session) -> Sequence[InboundMessage]:
    return session.exec(select(InboundMessage).where(col(InboundMessage.quarantined).is_(True))
                        .order_by(col(InboundMessage.received_at))).all()


def message_states(session: Session, ids: Iterable[int]) -> dict[int, str]:
    """The state of each of these stored messages."""
    wanted = list(set(ids))
    states: dict[int, str] = {}
    for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
        rows = session.exec(select(InboundMessage.id, InboundMessage.state)
                            .where(col(InboundMessage.id).in_(wanted[start:start + 500])))
        states.update({int(i): str(s) for i, s in rows})
    return states


def message_state_counts(session: Session) -> dict[str, int]:
    rows = session.exec(select(InboundMessage.state, func.count())
                        .group_by(InboundMessage.state)).all()
    return {state: n for state, n in rows}


def oldest_unprocessed(session: Session) -> datetime | None:
    return session.exec(select(func.min(InboundMessage.received_at)).where(
        col(InboundMessage.state).notin_([STATE_PROCESSED, STATE_PARKED, STATE_DROPPED]))).one()


def problem_messages(session: Session) -> Sequence[InboundMessage]:
    return session.exec(select(InboundMessage).where(
        col(InboundMessage.state).in_([STATE_FAILED, STATE_PARKED]))
        .order_by(col(InboundMessage.id))).all()


def last_received(session: Session) -> dict[str, datetime]:
    rows = session.exec(select(InboundMessage.channel, func.max(InboundMessage.received_at))
                        .group_by(InboundMessage.channel)).all()
    return {channel: at for channel, at in rows if at is not None}


def outbox_depth(session: Session) -> tuple[int, datetime | None]:
    depth = session.exec(select(func.count()).select_from(OutboundMessage)
                         .where(OutboundMessage.status == OUT_QUEUED)).one()
    oldest = session.exec(select(func.min(OutboundMessage.created_at))
                          .where(OutboundMessage.status == OUT_QUEUED)).one()
    return depth, oldest


def outbound_status_counts(session: Session) -> dict[str, int]:
    rows = session.exec(select(OutboundMessage.status, func.count())
                        .group_by(OutboundMessage.status)).all()
    return {status: n for status, n in rows}


def overdue_deadlines(session: Session, now: datetime) -> Sequence[Deadline]:
    return session.exec(select(Deadline).where(Deadline.state == DL_OPEN,
                                               col(Deadline.due_at) <= now)
                        .order_by(col(Deadline.due_at))).all()


def meta(session: Session, key: str) -> str | None:
    row = session.get(Meta, key)
    return row.value if row else None


def imap_states(session: Session) -> Sequence[ImapState]:
    return session.exec(select(ImapState)).all()


def inbound_by_ids(session: Session, ids: Iterable[int]) -> dict[int, InboundMessage]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.exec(select(InboundMessage).where(col(InboundMessage.id).in_(wanted))).all()
    return {row.id: row for row in rows if row.id is not None}


def outbound_by_ids(session: Session, ids: Iterable[int]) -> dict[int, OutboundMessage]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.exec(select(OutboundMessage)
                        .where(col(OutboundMessage.id).in_(wanted))).all()
    return {row.id: row for row in rows if row.id is not None}


# Rows fetched per round trip when streaming an incident's certificates: an
# incident can have millions, and the export must not hold them all at once.
STREAM_BATCH = 1000


def certificates_of(session: Session, incident_id: str) -> Iterator[Certificate]:
    yield from session.exec(select(Certificate).where(Certificate.incident_id == incident_id)
                            .order_by(col(Certificate.id))
                            .execution_options(yield_per=STREAM_BATCH))


def domains_of(session: Session, incident_id: str) -> Iterator[str]:
    yield from session.exec(select(Domain.name).where(Domain.incident_id == incident_id)
                            .order_by(col(Domain.name))
                            .execution_options(yield_per=STREAM_BATCH))


def open_deadline_count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(Deadline)
                        .where(Deadline.state == DL_OPEN)).one()


def raw_inbound(session: Session, inbound_id: int) -> bytes | None:
    row = session.get(RawMessage, inbound_id)
    return bytes(row.data) if row is not None else None


# ---------------------------------------------------------------- deadlines, reminders, digest
# Used by bot/decide/{deadlines,reminders,commands,reports,proposals}.py. Each
# scheduler query is shaped for an index (named beside it) so that a pass costs
# what is due, not the history.


def due_reminder_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Open deadlines whose next reminder time has come (index ix_deadline_due)."""
    return list(session.exec(
        select(Deadline.id).where(Deadline.state == DL_OPEN,
                                  col(Deadline.next_reminder_at) <= now)
        .order_by(col(Deadline.next_reminder_at)).limit(limit)))  # type: ignore[arg-type]


def open_deadlines(session: Session, incident_id: str) -> Sequence[Deadline]:
    return session.exec(select(Deadline).where(Deadline.incident_id == incident_id,
                                               Deadline.state == DL_OPEN)
                        .order_by(col(Deadline.due_at), col(Deadline.id))).all()


def reminder_logged(session: Session, deadline_id: int, stage: str) -> bool:
    found = session.exec(select(ReminderLog.id).where(ReminderLog.deadline_id == deadline_id,
                                                      ReminderLog.stage == stage)).first()
    return found is not None


def incidents_without_reports_mode(session: Session, notified_before: datetime,
                                   limit: int) -> Sequence[Incident]:
    """Open incidents whose R3 report mode is undecided (index ix_incident_r3)."""
    return session.exec(select(Incident).where(col(Incident.reports_mode).is_(None),
                                               col(Incident.notified_at) <= notified_before,
                                               Incident.status == "open")
                        .order_by(col(Incident.notified_at)).limit(limit)).all()


def open_deadlines_due_before(session: Session, before: datetime,
                              limit: int) -> Sequence[Deadline]:
    """Open deadlines due by `before`, soonest first (index ix_deadline_state_due)."""
    return session.exec(select(Deadline).where(Deadline.state == DL_OPEN,
                                               col(Deadline.due_at) <= before)
                        .order_by(col(Deadline.due_at)).limit(limit)).all()


def open_proposals(session: Session, incident_id: str | None = None,
                   limit: int = 1000) -> Sequence[Proposal]:
    query = select(Proposal).where(Proposal.state == "open")
    if incident_id is not None:
        query = query.where(Proposal.incident_id == incident_id)
    return session.exec(query.order_by(col(Proposal.received_at)).limit(limit)).all()


# "Since" includes the instant itself: an event at the very time of the last
# digest may be listed twice, but is never left out.
def events_of_kind_since(session: Session, kind: str, since: datetime,
                         limit: int) -> Sequence[Event]:
    return session.exec(select(Event).where(col(Event.at) >= since, Event.kind == kind)
                        .order_by(col(Event.at)).limit(limit)).all()


def quarantined_since(session: Session, since: datetime, limit: int) -> Sequence[InboundMessage]:
    return session.exec(select(InboundMessage).where(col(InboundMessage.quarantined).is_(True),
                                                     col(InboundMessage.received_at) >= since)
                        .order_by(col(InboundMessage.received_at)).limit(limit)).all()


def open_incidents(session: Session, limit: int = 1000) -> Sequence[Incident]:
    return session.exec(select(Incident).where(Incident.status == "open")
                        .order_by(col(Incident.year), col(Incident.seq)).limit(limit)).all()


def undisclosed_incidents(session: Session, rulesets: Sequence[str],
                          limit: int) -> Sequence[Incident]:
    """Open incidents under a ruleset that asks for public disclosure, with no link yet."""
    return session.exec(select(Incident).where(
        Incident.status == "open", col(Incident.ruleset).in_(list(rulesets)),
        col(Incident.public_disclosure).is_(None))
        .order_by(col(Incident.notified_at)).limit(limit)).all()


def suppressed_replies_since(session: Session, since: datetime,
                             limit: int = 100_000) -> dict[str, int]:
    """Automatic replies the daily cap suppressed since `since`, per address (most first)."""
    counts: dict[str, int] = {}
    for event in events_of_kind_since(session, "reply-suppressed", since, limit):
        try:
            address = str(json.loads(event.data or "{}").get("address") or "?")
        except (ValueError, AttributeError):
            address = "?"
        counts[address] = counts.get(address, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
