"""Moving every row of one incident into another (staff `/merge`), inside the caller's transaction.

Bulk UPDATEs without the ORM: an incident may hold millions of certificate
rows. The caller flushes first and expires what it holds afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from storage.models import (
    Certificate,
    CertificateListLoad,
    Deadline,
    Domain,
    Event,
    FinalReport,
    FormValue,
    InboundMessage,
    Notice,
    OutboundMessage,
    Proposal,
    SignatureUse,
)

# Rows that simply change incident: nothing in them is unique per incident.
_MOVED_AS_THEY_ARE = (InboundMessage, OutboundMessage, Event, Deadline, Notice, Proposal,
                      FinalReport, CertificateListLoad, SignatureUse)


@dataclass(frozen=True)
class Moved:
    messages: int
    events: int
    deadlines: int
    certificates: int  # moved; those the kept incident had already are counted in `repeated`
    repeated: int
    domains: int


def _update(session: Session, model: type, source: str, target: str,
            **values: object) -> int:
    table = model.__table__  # type: ignore[attr-defined]
    result = session.connection().execute(
        sa.update(table).where(table.c.incident_id == source)
        .values(incident_id=target, **values))
    return int(result.rowcount or 0)


def _move_unique(session: Session, model: type, column: str, source: str, target: str) -> int:
    """Move the rows whose `column` the target lacks; those it has already are deleted.

    (incident_id, column) is unique: the same certificate or domain listed in
    both incidents is one row of the merged one. The mail that listed it
    stays, and its raw bytes.
    """
    table = model.__table__  # type: ignore[attr-defined]
    held = sa.select(table.c[column]).where(table.c.incident_id == target)
    connection = session.connection()
    connection.execute(sa.delete(table).where(table.c.incident_id == source,
                                              table.c[column].in_(held)))
    return int(connection.execute(
        sa.update(table).where(table.c.incident_id == source)
        .values(incident_id=target)).rowcount or 0)


def move_incident(session: Session, source: str, target: str) -> Moved:
    """Every row of incident `source` into `target`; the incident rows themselves stay."""
    session.flush()
    connection = session.connection()
    counts = {model: _update(session, model, source, target) for model in _MOVED_AS_THEY_ARE
              if model is not InboundMessage}
    messages = _update(session, InboundMessage, source, target)
    # Its answers become earlier answers of the kept incident: one current answer a key.
    _update(session, FormValue, source, target, current=False)
    certificates_before = int(connection.execute(
        sa.select(sa.func.count()).select_from(Certificate.__table__)  # type: ignore[arg-type]
        .where(Certificate.__table__.c.incident_id == source)).scalar_one())  # type: ignore[attr-defined]
    certificates = _move_unique(session, Certificate, "key", source, target)
    domains = _move_unique(session, Domain, "name", source, target)
    session.expire_all()
    return Moved(messages=messages, events=counts[Event], deadlines=counts[Deadline],
                 certificates=certificates, repeated=certificates_before - certificates,
                 domains=domains)
