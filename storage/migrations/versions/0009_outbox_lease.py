"""Outgoing mail records who is delivering it and until when: a lease across hosts.

Two `serve` hosts on one PostgreSQL both send the outbox; a sender that dies
mid-delivery must leave the mail to the other once its lease has run out, and
must not record an outcome for a mail another sender has taken over. Both
columns are empty on mail queued or sent before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_message") as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_message") as batch_op:
        batch_op.drop_column("lease_until")
        batch_op.drop_column("claimed_by")
