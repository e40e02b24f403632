"""TSA: the record of every RFC 3161 timestamp token (unique serials)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:00:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tsa_tokens',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('gen_time', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('policy', sa.String(length=128), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=16), nullable=False),
    sa.Column('message_imprint', sa.String(length=128), nullable=False),
    sa.Column('tsa_certificate', sa.String(length=64), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('serial')
    )
    op.create_index(op.f('ix_tsa_tokens_gen_time'), 'tsa_tokens', ['gen_time'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_tsa_tokens_gen_time'), table_name='tsa_tokens')
    op.drop_table('tsa_tokens')
