"""Bulk writes of an incident's certificates and domains: chunked, idempotent inserts.

A list can hold millions of rows, so rows go in as one `executemany` per
chunk (the caller chunks), never one ORM object each. Duplicates — within a
list, across lists, or when a failed message is processed again — are
skipped by the unique keys (incident_id, key) and (incident_id, name) with
`INSERT … ON CONFLICT DO NOTHING`. That clause is spelled by each dialect's
own `insert()` (SQLite and PostgreSQL have it); this is the one place that
knows which dialect is in use, as storage/db.py is for connection settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from storage.db import insert_on_conflict
from storage.models import Certificate, CertificateListLoad, Domain

CERTIFICATE_TABLE: sa.Table = Certificate.__table__  # type: ignore[attr-defined]
DOMAIN_TABLE: sa.Table = Domain.__table__  # type: ignore[attr-defined]

# Columns a certificate row carries, in the order of the bulk insert.
CERTIFICATE_COLUMNS = ("incident_id", "key", "sha256", "serial", "issuer", "subject",
                       "dns_names", "not_before", "not_after", "precertificate", "crtsh_id",
                       "inbound_id")


def _insert_ignoring_duplicates(dialect: str, table: sa.Table) -> Any:
    return insert_on_conflict(dialect, table).on_conflict_do_nothing()


@dataclass(frozen=True)
class _Plan:
    """A compiled positional INSERT and the bind processors its columns need."""

    sql: str
    order: tuple[int, ...]  # position of each statement parameter in the caller's tuple
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]


# Drivers whose executemany counts the rows inserted (skipping ON CONFLICT
# ones) in rowcount; any other gets RETURNING and a count of what it returns.
COUNTING_DRIVERS = ("pysqlite", "psycopg")


@lru_cache(maxsize=8)
def _plan(dialect: sa.engine.Dialect, table: sa.Table, columns: tuple[str, ...]) -> _Plan:
    # psycopg takes positional %s as well as the named style SQLAlchemy uses
    # for it: positional lets rows go to executemany as the tuples they are.
    positional = dialect if dialect.positional else type(dialect)(paramstyle="format")
    compiled = _insert_ignoring_duplicates(dialect.name, table).compile(
        dialect=positional, column_keys=list(columns))
    names = tuple(compiled.positiontup or ())
    processors = []
    for position, name in enumerate(names):
        processor = table.c[name].type.bind_processor(dialect)
        if processor is not None:
            processors.append((position, processor))
    return _Plan(str(compiled), tuple(columns.index(n) for n in names), tuple(processors))


def _insert_many(session: Session, table: sa.Table, columns: tuple[str, ...],
                 rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert `rows`, skipping known keys; returns how many were new."""
    if not rows:
        return 0
    connection = session.connection()
    dialect = connection.dialect
    if dialect.driver not in COUNTING_DRIVERS:
        return len(session.execute(
            _insert_ignoring_duplicates(dialect.name, table).returning(table.c.id),
            [dict(zip(columns, row, strict=True)) for row in rows]).all())
    # SQLAlchemy's per-row parameter building costs as much as SQLite's own
    # insert (measured: ~6 µs a row), and on PostgreSQL its RETURNING batches
    # took minutes for a list psycopg's pipelined executemany takes in
    # seconds. The compiled statement with the columns' own bind processors
    # (UTC datetimes, booleans) gives the rows to the driver's executemany,
    # which sums the rows inserted into rowcount: rows skipped by ON CONFLICT
    # are not counted.
    plan = _plan(dialect, table, columns)
    identity = plan.order == tuple(range(len(columns)))
    if identity and not plan.processors:
        return connection.exec_driver_sql(plan.sql, list(rows)).rowcount
    params: list[tuple[Any, ...]] = []
    for row in rows:
        if identity:
            # Most rows of a big list need no processor at all: no validity
            # dates, and a bool, which sqlite3 binds as the integer 0 or 1
            # that Boolean's processor would give. Passing those rows as they
            # are saves ~1.5 µs a row.
            for position, _ in plan.processors:
                value = row[position]
                if value is not None and value.__class__ is not bool:
                    break
            else:
                params.append(row)
                continue
        values = [row[i] for i in plan.order]
        for position, processor in plan.processors:
            if values[position] is not None:
                values[position] = processor(values[position])
        params.append(tuple(values))
    return connection.exec_driver_sql(plan.sql, params).rowcount


def insert_certificates(session: Session, rows: Sequence[tuple[Any, ...]]) -> int:
    """Insert certificate rows (tuples in CERTIFICATE_COLUMNS order); returns how many were new."""
    return _insert_many(session, CERTIFICATE_TABLE, CERTIFICATE_COLUMNS, rows)


def insert_domains(session: Session, incident_id: str, names: Sequence[str]) -> int:
    """Insert domain names of an incident; returns how many it did not have yet."""
    return _insert_many(session, DOMAIN_TABLE, ("incident_id", "name"),
                        [(incident_id, n) for n in names])


def list_loads(session: Session, inbound_id: int) -> list[CertificateListLoad]:
    """The stored progress of each list of one message, by position."""
    return list(session.exec(select(CertificateListLoad)
                             .where(CertificateListLoad.inbound_id == inbound_id)
                             .order_by(col(CertificateListLoad.position))))


def save_list_load(session: Session, load: CertificateListLoad) -> CertificateListLoad:
    """Write a list's progress (insert or update), in the caller's transaction."""
    return session.merge(load)


def certificate_count(session: Session, incident_id: str) -> int:
    return session.exec(select(func.count()).select_from(Certificate)
                        .where(Certificate.incident_id == incident_id)).one()


def domain_count(session: Session, incident_id: str) -> int:
    return session.exec(select(func.count()).select_from(Domain)
                        .where(Domain.incident_id == incident_id)).one()
