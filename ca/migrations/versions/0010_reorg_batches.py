"""Reorganization batches: bulk reissue of officials' certificates from a mapping

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26 08:00:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_certificates_predecessor_id', 'certificates', ['predecessor_id'])
    op.create_table('reorg_batches',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mapping_sha256', sa.String(length=64), nullable=False),
    sa.Column('mapping_text', sa.Text(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rekey', sa.Boolean(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('failed', sa.Integer(), nullable=False),
    sa.Column('runner', sa.String(length=128), nullable=True),
    sa.Column('heartbeat_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_reorg_batches_mapping_sha256', 'reorg_batches', ['mapping_sha256'])
    op.create_index('ix_reorg_batches_status', 'reorg_batches', ['status'])
    op.create_table('reorg_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('batch_id', sa.Integer(), nullable=False),
    sa.Column('old_serial', sa.String(length=64), nullable=False),
    sa.Column('old_certificate_id', sa.Integer(), nullable=False),
    sa.Column('official_id', sa.Integer(), nullable=False),
    sa.Column('row', sa.Integer(), nullable=False),
    sa.Column('old_subject', sa.Text(), nullable=False),
    sa.Column('new_subject', sa.Text(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('new_serial', sa.String(length=64), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('updated_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['batch_id'], ['reorg_batches.id'], ),
    sa.ForeignKeyConstraint(['old_certificate_id'], ['certificates.id'], ),
    sa.ForeignKeyConstraint(['official_id'], ['officials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('batch_id', 'old_serial', name='uq_reorg_items_batch_serial')
    )
    op.create_index('ix_reorg_items_official_id', 'reorg_items', ['official_id'])
    op.create_index('ix_reorg_items_batch_status', 'reorg_items', ['batch_id', 'status'])


def downgrade() -> None:
    op.drop_index('ix_reorg_items_batch_status', table_name='reorg_items')
    op.drop_index('ix_reorg_items_official_id', table_name='reorg_items')
    op.drop_table('reorg_items')
    op.drop_index('ix_reorg_batches_status', table_name='reorg_batches')
    op.drop_index('ix_reorg_batches_mapping_sha256', table_name='reorg_batches')
    op.drop_table('reorg_batches')
    op.drop_index('ix_certificates_predecessor_id', table_name='certificates')
