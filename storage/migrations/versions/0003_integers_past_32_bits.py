"""Integers that outgrow 32 bits: crt.sh ids, IMAP UIDVALIDITY and UIDs.

crt.sh ids passed 2**31 years ago, and RFC 3501's UIDVALIDITY and UIDs are
unsigned 32-bit numbers. PostgreSQL's INTEGER is signed 32-bit, so a CA's
list with crt.sh ids failed to store there ("integer out of range"), and an
IMAP server with a large UIDVALIDITY could not be polled. SQLite's INTEGER
is 64 bits whatever the declared type, so there nothing changes: copying a
certificate table of millions of rows to rename a type would gain nothing
(storage.migrate.same_type tells the schema check so).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

WIDENED = (("certificate", "crtsh_id", True), ("imap_state", "uidvalidity", True),
           ("imap_state", "last_uid", False))


def upgrade() -> None:
    _retype(sa.Integer, sa.BigInteger)


def downgrade() -> None:
    _retype(sa.BigInteger, sa.Integer)


def _retype(old: type[sa.types.TypeEngine], new: type[sa.types.TypeEngine]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, nullable in WIDENED:
        op.alter_column(table, column, existing_type=old(), type_=new(),
                        existing_nullable=nullable)
