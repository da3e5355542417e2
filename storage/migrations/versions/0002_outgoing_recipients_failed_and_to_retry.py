"""Outgoing mail records the recipients it failed for and those still to retry.

A mail to two contacts of which one bounced was marked failed as a whole,
and a relay's 4xx for one recipient while the others took it was only
logged: that recipient never got the mail. Both columns are empty on mail
sent before.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbound_message") as batch_op:
        batch_op.add_column(sa.Column("failed_recipients", sa.String(), nullable=True))
        batch_op.add_column(sa.Column("retry_recipients", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbound_message") as batch_op:
        batch_op.drop_column("retry_recipients")
        batch_op.drop_column("failed_recipients")
