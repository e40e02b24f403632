"""audit hash chain: seq, prev_hash and hash on audit_events; audit_head; audit_seals

Existing entries are chained in id order, so a database made before this revision verifies.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 01:00:00
"""

import sqlalchemy as sa
from alembic import op

import ca.models

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_BATCH = 1000


def _chain_existing_entries() -> tuple[int, str]:
    """Give the entries already there their seq, prev_hash and hash (in id order)."""
    from ca.audit import GENESIS_HASH, chain_hash

    events = sa.table(
        'audit_events',
        sa.column('id', sa.Integer()), sa.column('at', ca.models.UTCDateTime()),
        sa.column('actor', sa.String()), sa.column('action', sa.String()),
        sa.column('object', sa.String()), sa.column('outcome', sa.String()),
        sa.column('request_id', sa.String()), sa.column('details', sa.Text()),
        sa.column('seq', sa.BigInteger()), sa.column('prev_hash', sa.String()),
        sa.column('hash', sa.String()),
    )
    bind = op.get_bind()
    seq, prev, last_id = 0, GENESIS_HASH, 0
    while True:
        rows = bind.execute(
            sa.select(events).where(events.c.id > last_id).order_by(events.c.id).limit(_BATCH)
        ).mappings().all()
        if not rows:
            return seq, prev
        updates = []
        for row in rows:
            seq += 1
            digest = chain_hash(seq, prev, row)
            updates.append({'b_id': row['id'], 'b_seq': seq, 'b_prev': prev, 'b_hash': digest})
            prev, last_id = digest, row['id']
        bind.execute(
            events.update().where(events.c.id == sa.bindparam('b_id')).values(
                seq=sa.bindparam('b_seq'), prev_hash=sa.bindparam('b_prev'),
                hash=sa.bindparam('b_hash')),
            updates,
        )


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))

    head_seq, head_hash = _chain_existing_entries()

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        batch_op.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint('uq_audit_events_seq', ['seq'])

    head = op.create_table('audit_head',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.bulk_insert(head, [{'id': 1, 'seq': head_seq, 'hash': head_hash}])

    op.create_table('audit_seals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', ca.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('key_label', sa.String(length=128), nullable=False),
    sa.Column('algorithm', sa.String(length=32), nullable=False),
    sa.Column('signature', sa.LargeBinary(), nullable=False),
    sa.Column('public_key_der', sa.LargeBinary(), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_seals_seq'), ['seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_seals', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_seals_seq'))
    op.drop_table('audit_seals')
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_constraint('uq_audit_events_seq', type_='unique')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
