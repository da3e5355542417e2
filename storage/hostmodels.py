"""The tables of several hosts on one database: the incident counter and the nodes."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from storage.columns import _when


class IncidentCounter(SQLModel, table=True):
    """The last incident number given out in a year.

    Bumped by one UPSERT in the transaction that opens the incident, so the
    row stays locked until that transaction ends: two hosts opening incidents
    at once take turns, and a rolled-back transaction gives its number back.
    """

    __tablename__ = "incident_counter"

    year: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    last: int


class Node(SQLModel, table=True):
    """One run of `serve` on this database, and its heartbeat (bot.node)."""

    __tablename__ = "nodes"

    # A new id at each start: a restarted serve, or a second one on the same
    # machine, is a row of its own, and pids repeat across machines.
    id: str = Field(primary_key=True, max_length=32)
    name: str = Field(index=True)
    pid: int
    started_at: datetime = _when()
    last_seen_at: datetime = _when()
    stopped_at: datetime | None = _when(default=None, nullable=True)
