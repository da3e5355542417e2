"""Duplicate notifications and /merge: the opening form's digest, the merge pointer.

The same form re-sent with a new Message-ID opened a second incident. An
incident now keeps the SHA-256 of the answers that opened it (indexed with
its CA, for the duplicate check), and, when staff merged it into another,
that other incident's id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.add_column(sa.Column("form_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("merged_into", sa.String(), nullable=True))
        batch.create_foreign_key("fk_incident_merged_into", "incident", ["merged_into"], ["id"])
        batch.create_index("ix_incident_form", ["ca", "form_digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("incident") as batch:
        batch.drop_index("ix_incident_form")
        batch.drop_constraint("fk_incident_merged_into", type_="foreignkey")
        batch.drop_column("merged_into")
        batch.drop_column("form_digest")
