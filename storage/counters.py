"""Counters bumped with one statement, inside the caller's transaction, without the ORM.

An ORM read-modify-write of a counter costs a flush of everything pending, a
SELECT and an UPDATE; an upsert with a condition is one statement, and needs
no flush because nothing pending can hold the same counter (it is only ever
written here).
"""

from __future__ import annotations

import functools

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy.sql.expression import Executable
from sqlmodel import Session

from storage.db import insert_on_conflict
from storage.models import AutoReplyCount, Incident, IncidentCounter


def take_auto_reply(session: Session, address: str, day: str, cap: int) -> bool:
    """Count one automatic reply to `address` on `day`; False once past the cap.

    Every reply is counted, those past the cap too, so the count less the cap
    is how many were suppressed (or, for a new incident's acknowledgement,
    sent past the cap).
    """
    return count_auto_reply(session, address, day) <= cap


def count_auto_reply(session: Session, address: str, day: str) -> int:
    """Count one automatic reply to `address` on `day`; the day's count, this one included."""
    connection = session.connection()
    return int(connection.execute(_auto_reply_upsert(connection.dialect.name),
                                  {"address": address, "day": day}).scalar_one())


@functools.cache
def _auto_reply_upsert(dialect_name: str) -> Executable:
    # Built once: making the statement costs more than running it.
    table = AutoReplyCount.__table__
    return insert_on_conflict(dialect_name, table).values(
        address=bindparam("address"), day=bindparam("day"), count=1,
    ).on_conflict_do_update(
        index_elements=[table.c.address, table.c.day],
        set_={"count": table.c.count + 1},
    ).returning(table.c.count)


def take_incident_number(session: Session, year: int) -> int:
    """The next incident number of `year`, held until the caller's transaction ends.

    The counter's row stays locked by this UPSERT until commit or rollback, so
    a second host opening an incident waits for it and then gets the next
    number; a transaction that rolls back gives its number back (no gaps).
    A year's first number follows the incidents already there (rows made
    before the counter existed, or by hand).
    """
    connection = session.connection()
    return int(connection.execute(_incident_number_upsert(connection.dialect.name),
                                  {"year": year}).scalar_one())


@functools.cache
def _incident_number_upsert(dialect_name: str) -> Executable:
    table = IncidentCounter.__table__
    incidents = Incident.__table__
    first = (sa.select(sa.func.coalesce(sa.func.max(incidents.c.seq), 0) + 1)
             .where(incidents.c.year == bindparam("year")).scalar_subquery())
    return insert_on_conflict(dialect_name, table).values(
        year=bindparam("year"), last=first,
    ).on_conflict_do_update(
        index_elements=[table.c.year],
        set_={"last": table.c.last + 1},
    ).returning(table.c.last)
