"""Accounts: web logins (argon2id password, encrypted TOTP secret, roles, lock-out)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 05:40:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('display_name', sa.String(length=128), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('totp_secret', sa.LargeBinary(), nullable=True),
    sa.Column('roles', sa.String(length=128), nullable=False),
    sa.Column('official_id', sa.Integer(), nullable=True),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked', sa.Boolean(), nullable=False),
    sa.Column('last_totp_step', sa.BigInteger(), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('password_changed_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['official_id'], ['officials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('username')
    )


def downgrade() -> None:
    op.drop_table('accounts')
