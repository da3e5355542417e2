"""Stored messages claimed for acting on, by one worker across every host of the database.

On PostgreSQL the rows are locked with `SELECT … FOR UPDATE SKIP LOCKED` in
the transaction that acts on them: a worker on another host passes over the
rows one holds (it neither waits nor acts on them twice), and the lock ends
with the transaction, so a worker that dies holds nothing. On SQLite one
writer at a time holds the whole database (BEGIN IMMEDIATE, and the flock
turnstile of storage.writelock between processes), which is the claim.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from storage.models import OUT_QUEUED, InboundMessage, OutboundMessage


def claim_messages(session: Session, ids: Sequence[int]) -> dict[int, InboundMessage]:
    """The rows of `ids` this transaction now holds; rows another one holds are left out."""
    query = select(InboundMessage).where(col(InboundMessage.id).in_(list(ids)))
    if session.connection().dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    return {row.id: row for row in session.exec(query)  # type: ignore[misc]
            if row.id is not None}


def outgoing_claimed_by(session: Session, node_id: str) -> int:
    """Queued mails a sender of this node holds the lease of (owner ids begin with the node id)."""
    rows = session.exec(select(OutboundMessage.id).where(
        col(OutboundMessage.status) == OUT_QUEUED,
        col(OutboundMessage.claimed_by).startswith(f"{node_id}:")))
    return len(rows.all())
