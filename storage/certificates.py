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

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, func, select

from storage.models import Certificate, Domain

CERTIFICATE_TABLE: sa.Table = Certificate.__table__  # type: ignore[attr-defined]
DOMAIN_TABLE: sa.Table = Domain.__table__  # type: ignore[attr-defined]

# Columns a certificate row carries, in the order of the bulk insert.
CERTIFICATE_COLUMNS = ("incident_id", "key", "sha256", "serial", "issuer", "subject",
                       "dns_names", "not_before", "not_after", "precertificate", "crtsh_id",
                       "inbound_id")


def _insert_ignoring_duplicates(session: Session, table: sa.Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    raise NotImplementedError(f"no duplicate-ignoring insert for the {dialect} dialect")


def insert_certificates(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert certificate rows (dicts keyed by CERTIFICATE_COLUMNS); known keys are skipped."""
    if rows:
        session.execute(_insert_ignoring_duplicates(session, CERTIFICATE_TABLE), rows)


def insert_domains(session: Session, incident_id: str, names: Sequence[str]) -> None:
    """Insert domain names of an incident; names it already has are skipped."""
    if names:
        session.execute(_insert_ignoring_duplicates(session, DOMAIN_TABLE),
                        [{"incident_id": incident_id, "name": n} for n in names])


def certificate_count(session: Session, incident_id: str) -> int:
    return session.exec(select(func.count()).select_from(Certificate)
                        .where(Certificate.incident_id == incident_id)).one()


def domain_count(session: Session, incident_id: str) -> int:
    return session.exec(select(func.count()).select_from(Domain)
                        .where(Domain.incident_id == incident_id)).one()
