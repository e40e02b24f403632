"""Mail outbox: e-mails to officials (expiry warnings, renewals), kept until delivered

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 07:40:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mail_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ref', sa.String(length=128), nullable=True),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('sent_at', ca.models.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    op.create_index('ix_mail_outbox_ref', 'mail_outbox', ['ref'])
    op.create_index('ix_mail_outbox_due', 'mail_outbox', ['status', 'next_attempt_at'])


def downgrade() -> None:
    op.drop_index('ix_mail_outbox_due', table_name='mail_outbox')
    op.drop_index('ix_mail_outbox_ref', table_name='mail_outbox')
    op.drop_table('mail_outbox')
