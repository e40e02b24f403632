"""Job leases: one process at a time runs the daily lifecycle job

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-26 11:00:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('holder', sa.String(length=128), nullable=True),
    sa.Column('until', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name')
    )


def downgrade() -> None:
    op.drop_table('job_leases')
