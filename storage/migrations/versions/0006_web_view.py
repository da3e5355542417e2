"""The staff web view (bot/operator/web): sign-in tokens, sessions, the sign-in record, attempts.

Four new tables, nothing else changed. Tokens and session ids are kept as
their SHA-256 only; `web_attempt` counts sign-in requests per address and
per client for the rate limits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('web_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('scope', sa.String(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('web_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_web_attempt_scope_key_at', ['scope', 'key', 'at'], unique=False)

    op.create_table('web_session',
    sa.Column('id_sha256', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(), nullable=False),
    sa.Column('csrf', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id_sha256')
    )
    op.create_table('web_sign_in',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('client', sa.String(), nullable=False),
    sa.Column('user_agent', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('web_sign_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_web_sign_in_address'), ['address'], unique=False)
        batch_op.create_index(batch_op.f('ix_web_sign_in_at'), ['at'], unique=False)

    op.create_table('web_sign_in_token',
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('address', sa.String(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requested_from', sa.String(), nullable=False),
    sa.PrimaryKeyConstraint('token_sha256')
    )


def downgrade() -> None:
    op.drop_table('web_sign_in_token')
    with op.batch_alter_table('web_sign_in', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_web_sign_in_at'))
        batch_op.drop_index(batch_op.f('ix_web_sign_in_address'))

    op.drop_table('web_sign_in')
    op.drop_table('web_session')
    with op.batch_alter_table('web_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_web_attempt_scope_key_at')

    op.drop_table('web_attempt')
