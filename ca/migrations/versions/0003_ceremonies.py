"""key ceremonies and CRLs: CA token labels, quorums, CRL numbers, status change times

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 02:00:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('cas') as batch:
        batch.add_column(sa.Column('token_label', sa.String(length=64), nullable=True))
    with op.batch_alter_table('certificates') as batch:
        batch.add_column(sa.Column('status_changed_at', ca.models.UTCDateTime(timezone=True), nullable=True))
        batch.create_index('ix_certificates_status_changed_at', ['status_changed_at'], unique=False)
    op.create_table('quorums',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('token_label', sa.String(length=64), nullable=False),
    sa.Column('ceremony', sa.String(length=128), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('salt', sa.String(length=64), nullable=False),
    sa.Column('secret_check', sa.String(length=64), nullable=False),
    sa.Column('shares', sa.Text(), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_label')
    )
    op.create_table('crls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ca_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('base_number', sa.Integer(), nullable=True),
    sa.Column('this_update', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_update', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('entries', sa.Integer(), nullable=False),
    sa.Column('der', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['ca_id'], ['cas.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('ca_id', 'number', 'kind', name='uq_crls_ca_number')
    )


def downgrade() -> None:
    op.drop_table('crls')
    op.drop_table('quorums')
    with op.batch_alter_table('certificates') as batch:
        batch.drop_index('ix_certificates_status_changed_at')
        batch.drop_column('status_changed_at')
    with op.batch_alter_table('cas') as batch:
        batch.drop_column('token_label')
