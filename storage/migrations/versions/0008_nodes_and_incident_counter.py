"""Several hosts on one database: the incident counter, and the `serve` nodes.

Incident numbers came from max(seq) + 1, which two hosts read alike; a
counter row per year, locked by the transaction that opens an incident, gives
them out one at a time. It starts from the numbers already given. `nodes`
holds one row per run of `serve` with its heartbeat (`status --json`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incident_counter",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.execute("INSERT INTO incident_counter (year, last) "
               "SELECT year, MAX(seq) FROM incident GROUP BY year")
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_nodes_name", "nodes", ["name"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_nodes_name", table_name="nodes")
    op.drop_table("nodes")
    op.drop_table("incident_counter")
