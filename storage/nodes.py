"""The `nodes` rows: one per start of `serve` on this database, and its heartbeat."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select, update

from storage.models import Node


def add_node(session: Session, node_id: str, name: str, pid: int, now: datetime) -> None:
    session.add(Node(id=node_id, name=name, pid=pid, started_at=now, last_seen_at=now))


def touch_node(session: Session, node_id: str, now: datetime, *, stopping: bool = False) -> None:
    """The node was seen at `now`; with `stopping`, it also stopped cleanly then."""
    values: dict[str, datetime] = {"last_seen_at": now}
    if stopping:
        values["stopped_at"] = now
    session.execute(update(Node).where(col(Node.id) == node_id).values(**values))


def all_nodes(session: Session) -> Sequence[Node]:
    """Every node, oldest start first."""
    return session.exec(select(Node).order_by(col(Node.started_at), col(Node.id))).all()
