"""An incident records when it was resolved; a request may have no due date.

Ruleset 2026-02 asks for updates "until the incident is remediated" and the
final report "once the incident has been resolved": `incident.resolved_at`
records that moment (null until then). An undated `/request` (R2, R5) has no
due date unless the ruleset gives one, so `deadline.due_at` may be null.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident") as batch_op:
        batch_op.add_column(sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("deadline") as batch_op:
        batch_op.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("deadline") as batch_op:
        batch_op.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    with op.batch_alter_table("incident") as batch_op:
        batch_op.drop_column("resolved_at")
