"""Read queries used by the views and the command line; all SQL of reads lives here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
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
    UTCDateTime,
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


# The columns of an `incidents --json` row. The list reads them as plain
# columns, not as ORM objects: building 10,000 SQLModel objects cost ~90% of
# the web board's time (bench/web_board.py).
INCIDENT_ROW_COLUMNS = ("id", "ca", "status", "category", "ruleset", "created_at",
                        "notified_at", "notification_deadline", "notified_on_time",
                        "late_by_seconds", "closed_at", "resolved_at")


def _plain(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A time column as the dialect returns it: naive UTC on SQLite, aware on PostgreSQL.

    For lists of thousands of rows: models.UTCDateTime's conversion of each
    value was a fifth of the board's read; `bot.clock.as_utc` and `iso` take
    naive times as UTC anyway.
    """
    if isinstance(column.type, UTCDateTime):
        return sa.type_coerce(column, UTCDateTime.impl).label(column.key)  # type: ignore[attr-defined]
    return column


def incident_rows(session: Session) -> Sequence[sa.Row[Any]]:
    table = Incident.__table__  # type: ignore[attr-defined]
    return session.execute(sa.select(*(_plain(table.c[name]) for name in INCIDENT_ROW_COLUMNS))
                           .order_by(table.c.year, table.c.seq)).all()


def open_deadline_rows(session: Session,
                       incident_ids: Sequence[str] | None = None) -> Sequence[sa.Row[Any]]:
    """(incident_id, kind, due_at) of every open deadline, soonest first (ix_deadline_state_due).

    With `incident_ids`, only theirs (a page of the board). `due_at` may be
    naive (UTC): see `_plain`; it is None for an undated request, which sorts
    first on SQLite and last on PostgreSQL.
    """
    table = Deadline.__table__  # type: ignore[attr-defined]
    query = sa.select(table.c.incident_id, table.c.kind, _plain(table.c.due_at)).where(
        table.c.state == DL_OPEN)
    if incident_ids is not None:
        query = query.where(table.c.incident_id.in_(list(incident_ids)))
    return session.execute(query.order_by(table.c.due_at, table.c.id)).all()


def incident_cas(session: Session) -> list[str]:
    """Every CA name incidents carry, each once (the board's CA filter and sort)."""
    table = Incident.__table__  # type: ignore[attr-defined]
    return [ca for (ca,) in session.execute(sa.select(table.c.ca).distinct())]


# ---------------------------------------------------------------- the web board
# The board filters, sorts and pages in SQL and reads the columns of the rows
# it shows only: the page costs one page, not the program (bench/web_board.py).


@dataclass(frozen=True)
class BoardQuery:
    """What the board lists: the filters, the sort and the page, as SQL needs them.

    `cas` are the exact CA names to keep (the caller matches the person's
    text against `incident_cas`), `ca_rank` a sort position for each CA name
    (equal for names that differ only in case). Sort keys: id, ca, category,
    status, notified, next, overdue; ties keep incident order (year, seq).
    """

    now: datetime
    only_open: bool = False
    overdue: bool = False
    cas: Sequence[str] | None = None
    sort: str = "id"
    descending: bool = False
    ca_rank: Mapping[str, int] = field(default_factory=dict)


def _deadline_table() -> sa.Table:
    return Deadline.__table__  # type: ignore[attr-defined, no-any-return]


def _is_overdue(deadline: sa.Table, now: datetime) -> sa.ColumnElement[bool]:
    # NULL <= now is not true: an undated request is never overdue.
    return sa.and_(deadline.c.state == DL_OPEN, deadline.c.due_at <= now)


def _board_where(query: sa.Select[Any], board: BoardQuery) -> sa.Select[Any]:
    table = Incident.__table__  # type: ignore[attr-defined]
    if board.only_open:
        query = query.where(table.c.status == "open")
    if board.cas is not None:
        query = query.where(table.c.ca.in_(list(board.cas)))
    if board.overdue:
        deadline = _deadline_table()
        query = query.where(sa.exists().where(deadline.c.incident_id == table.c.id,
                                              _is_overdue(deadline, board.now)))
    return query


def board_count(session: Session, board: BoardQuery) -> int:
    """How many incidents the board's filters keep."""
    table = Incident.__table__  # type: ignore[attr-defined]
    query = _board_where(sa.select(sa.func.count()).select_from(table), board)
    return int(session.execute(query).scalar_one())


def _text_order(session: Session, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """Code point order, as Python compares strings: PostgreSQL's database locale may not."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.collate(column, "C")
    return column  # SQLite's default collation (BINARY) is code point order already


def board_rows(session: Session, board: BoardQuery, offset: int,
               limit: int) -> Sequence[sa.Row[Any]]:
    """The INCIDENT_ROW_COLUMNS of one page of the board, in the board's order."""
    table = Incident.__table__  # type: ignore[attr-defined]
    query = sa.select(*(_plain(table.c[name]) for name in INCIDENT_ROW_COLUMNS))
    key: sa.ColumnElement[Any]
    if board.sort in ("next", "overdue"):
        deadline = _deadline_table()
        summary = (sa.select(deadline.c.incident_id.label("incident_id"),
                             sa.func.min(deadline.c.due_at).label("next_due_at"),
                             sa.func.count().filter(deadline.c.due_at <= board.now)
                             .label("overdue"))
                   .where(deadline.c.state == DL_OPEN).group_by(deadline.c.incident_id)
                   .subquery())
        query = query.outerjoin(summary, summary.c.incident_id == table.c.id)
        key = (summary.c.next_due_at if board.sort == "next"
               else sa.func.coalesce(summary.c.overdue, 0))
    elif board.sort == "ca" and board.ca_rank:  # no names: no incidents (CASE needs a WHEN)
        # A CA first seen after the ranks were read sorts after the others.
        key = sa.case(dict(board.ca_rank), value=table.c.ca, else_=len(board.ca_rank))
    elif board.sort == "notified":
        key = table.c.notified_at  # never NULL: an incident is a notification
    else:
        key = _text_order(session, table.c[board.sort if board.sort in (
            "category", "status") else "id"])
    ordered = key.desc() if board.descending else key.asc()
    if board.sort == "next":
        # No dated open deadline sorts after every time; SQLite and PostgreSQL
        # put NULL at opposite ends unless told.
        ordered = ordered.nulls_first() if board.descending else ordered.nulls_last()
    query = _board_where(query, board).order_by(ordered, table.c.year, table.c.seq)
    return session.execute(query.offset(offset).limit(limit)).all()


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


# ---------------------------------------------------------------- the web view's searches


def certificates_matching(session: Session, *, sha256: str | None = None,
                          serial: str | None = None, domain: str | None = None,
                          incident_id: str | None = None, limit: int = 200
                          ) -> Sequence[Certificate]:
    """Certificates by SHA-256, serial (canonical hex) or a dNSName, across incidents.

    A domain is matched with LIKE and then exactly by the caller (names are
    newline-separated in one column); none of these has an index of its own,
    as one would slow every list's bulk insert for a search staff run by hand.
    """
    query = select(Certificate)
    if sha256 is not None:
        query = query.where(Certificate.sha256 == sha256)
    elif serial is not None:
        query = query.where(Certificate.serial == serial)
    elif domain is not None:
        query = query.where(col(Certificate.dns_names).contains(domain, autoescape=True))
    else:
        return []
    if incident_id is not None:
        query = query.where(Certificate.incident_id == incident_id)
    return session.exec(query.order_by(col(Certificate.incident_id), col(Certificate.id))
                        .limit(limit)).all()


def domains_matching(session: Session, name: str, incident_id: str | None = None,
                     limit: int = 200) -> Sequence[Domain]:
    query = select(Domain).where(Domain.name == name)
    if incident_id is not None:
        query = query.where(Domain.incident_id == incident_id)
    return session.exec(query.order_by(col(Domain.incident_id)).limit(limit)).all()


def open_deadlines_with_ca(session: Session) -> Sequence[tuple[Deadline, str]]:
    """Every open deadline with its incident's CA, soonest first."""
    return session.exec(select(Deadline, Incident.ca)
                        .join(Incident, col(Incident.id) == col(Deadline.incident_id))
                        .where(Deadline.state == DL_OPEN)
                        .order_by(col(Deadline.due_at), col(Deadline.id))).all()
