"""API tokens: bearer tokens for the JSON API, scoped to an account's official, stored hashed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 06:10:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('official_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=8), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=64), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['official_id'], ['officials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    op.create_index('ix_api_tokens_account_id', 'api_tokens', ['account_id'])


def downgrade() -> None:
    op.drop_index('ix_api_tokens_account_id', table_name='api_tokens')
    op.drop_table('api_tokens')
