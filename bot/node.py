"""Who this `serve` is among the hosts of one database: its name, its start id, its heartbeat.

A node is one run of `serve`. Its `name` is `[bot] node_name` (the host name
by default); its `id` is new at every start, so two serves on one machine,
or one restarted, are entries of their own (a pid alone repeats across
machines, and name + pid across restarts in containers). Work a node claims
in the database (part of the outbox's lease owner, for instance) names the
node by `id`; `status` asks `claimed_work` whether a node that stopped
heartbeating still holds any.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from bot.clock import Clock, as_utc, iso
from storage.claims import outgoing_claimed_by
from storage.db import Database
from storage.nodes import add_node, all_nodes, touch_node

log = logging.getLogger("rootnotify.node")

# How often `serve` tells the database it is alive; a node unseen for
# STALE_AFTER is taken for dead (a host lost, SIGKILL): three beats missed.
HEARTBEAT_SECONDS = 5.0
STALE_AFTER = timedelta(seconds=HEARTBEAT_SECONDS * 3)

# Work a node may hold claimed in the database, by kind: each counts what
# the node with this id holds. Policy as data: a new kind of claim (the
# outbox's lease) adds its count here.
ClaimCount = Callable[[Session, str], int]
WORK_CLAIMS: dict[str, ClaimCount] = {"outgoing mail(s)": outgoing_claimed_by}
# `serve` puts its node's id here before it starts its children, so that the
# worker and the sender (other processes) claim work in its name.
NODE_ID_ENV = "ROOTNOTIFY_NODE_ID"


@dataclass(frozen=True)
class NodeIdentity:
    """This process's node: name from the configuration, id unique to this start."""

    name: str
    id: str
    pid: int


def this_node(name: str | None = None) -> NodeIdentity:
    """A new identity for this process: `name` ([bot] node_name), else the host name."""
    return NodeIdentity(name=name or socket.gethostname(), id=uuid.uuid4().hex,
                        pid=os.getpid())


_current: NodeIdentity | None = None


def current(name: str | None = None) -> NodeIdentity:
    """This process's node: `serve`'s (inherited by its children), else a new one, kept."""
    global _current
    if _current is None:
        inherited = os.environ.get(NODE_ID_ENV)
        _current = this_node(name)
        if inherited:
            _current = NodeIdentity(name=_current.name, id=inherited, pid=os.getppid())
    return _current


def register(db: Database, node: NodeIdentity, clock: Clock) -> None:
    with db.write() as session:
        add_node(session, node.id, node.name, node.pid, clock.now())


def heartbeat(db: Database, node: NodeIdentity, clock: Clock) -> None:
    with db.write() as session:
        touch_node(session, node.id, clock.now())


def stopped(db: Database, node: NodeIdentity, clock: Clock) -> None:
    """A clean stop: the node is not alive any more, and not lost either."""
    with db.write() as session:
        touch_node(session, node.id, clock.now(), stopping=True)


def claimed_work(session: Session, node_id: str) -> dict[str, int]:
    """Each kind of work the node holds claimed, that it holds any of."""
    counts = {kind: count(session, node_id) for kind, count in WORK_CLAIMS.items()}
    return {kind: n for kind, n in counts.items() if n}


def nodes_report(session: Session, now: datetime) -> tuple[list[dict[str, Any]], list[str]]:
    """`status`'s `nodes` entries, oldest start first, and what about them needs a person."""
    entries: list[dict[str, Any]] = []
    needs: list[str] = []
    for row in all_nodes(session):
        alive = row.stopped_at is None and now - as_utc(row.last_seen_at) <= STALE_AFTER
        entries.append({"name": row.name, "pid": row.pid, "started_at": iso(row.started_at),
                        "last_seen_at": iso(row.last_seen_at), "alive": alive})
        if not alive and row.stopped_at is None:  # lost, not stopped: what it held waits
            held = claimed_work(session, row.id)
            if held:
                what = ", ".join(f"{n} {kind}" for kind, n in sorted(held.items()))
                needs.append(f"node {row.name} (pid {row.pid}) stopped heartbeating at "
                             f"{iso(row.last_seen_at)} with work claimed: {what}")
    return entries, needs


async def heartbeats(db: Database, node: NodeIdentity, clock: Clock) -> None:
    """Tell the database this node is alive, every HEARTBEAT_SECONDS, until cancelled."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            await asyncio.to_thread(heartbeat, db, node, clock)
        except Exception as exc:  # the database away for a while: try again next beat
            log.warning("node heartbeat failed: %s", exc)
