"""Signatures that authenticated a staff command, so that each counts once.

S/MIME signs the body only: a copy of a signed staff mail with a new
Message-ID, or with its Subject and In-Reply-To rewritten to another
incident, ran again. Each accepted signature's value is now recorded; a
second use is refused as a replay.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signature_use",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(), nullable=True),
        sa.Column("signer", sa.String(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_message.id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incident.id"]),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("signature_use")
