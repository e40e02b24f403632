"""OCSP: pre-signed responses and the status-change feed of the responders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 02:00:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ocsp_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ca_id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('hash_algorithm', sa.String(length=16), nullable=False),
    sa.Column('cert_state', sa.String(length=128), nullable=False),
    sa.Column('responder_serial', sa.String(length=64), nullable=False),
    sa.Column('this_update', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_update', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ca_id'], ['cas.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ca_id', 'serial', 'hash_algorithm', name='uq_ocsp_responses_cert')
    )
    op.create_index('ix_ocsp_responses_next_update', 'ocsp_responses', ['ca_id', 'next_update'], unique=False)
    op.create_table('ocsp_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ca_id', sa.Integer(), nullable=False),
    sa.Column('serial', sa.String(length=64), nullable=False),
    sa.Column('at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ca_id'], ['cas.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_ocsp_changes_at'), 'ocsp_changes', ['at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_ocsp_changes_at'), table_name='ocsp_changes')
    op.drop_table('ocsp_changes')
    op.drop_index('ix_ocsp_responses_next_update', table_name='ocsp_responses')
    op.drop_table('ocsp_responses')
