"""Official requests: renewal / change / new certificate requests filed by officials (or
operators) and decided by operators

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 07:30:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_OPEN = "status IN ('pending', 'issuing')"


def upgrade() -> None:
    op.create_table('official_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('official_id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=True),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('key_choice', sa.String(length=8), nullable=False),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('filed_via', sa.String(length=16), nullable=False),
    sa.Column('requested_by', sa.String(length=128), nullable=False),
    sa.Column('requested_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by', sa.String(length=128), nullable=True),
    sa.Column('decided_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('new_serial', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['official_id'], ['officials.id'], ),
    sa.ForeignKeyConstraint(['key_id'], ['official_keys.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_official_requests_official_id', 'official_requests', ['official_id'])
    op.create_index('ix_official_requests_status', 'official_requests', ['status'])
    op.create_index('uq_official_requests_open', 'official_requests', ['serial'], unique=True,
                    sqlite_where=sa.text(_OPEN), postgresql_where=sa.text(_OPEN))


def downgrade() -> None:
    op.drop_index('uq_official_requests_open', table_name='official_requests')
    op.drop_index('ix_official_requests_status', table_name='official_requests')
    op.drop_index('ix_official_requests_official_id', table_name='official_requests')
    op.drop_table('official_requests')
