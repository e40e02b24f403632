"""Folded copies of names, subjects and organizations for search without tones

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-26 14:00:00
"""

import sqlalchemy as sa
from alembic import op

from ca.models import search_fold

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

_BATCH = 1000
# table -> {folded column: the columns it folds}
_FOLDED = {
    'certificates': {'subject_folded': ('subject',), 'organization_folded': ('organization',)},
    'officials': {'name_folded': ('name', 'email'), 'organization_folded': ('organization',)},
}


def _backfill(name: str, folded: dict[str, tuple[str, ...]]) -> None:
    sources = sorted({c for cols in folded.values() for c in cols})
    table = sa.table(name, sa.column('id'), *(sa.column(c) for c in (*sources, *folded)))
    bind = op.get_bind()
    last_id = 0
    while True:
        rows = bind.execute(
            sa.select(table.c.id, *(table.c[c] for c in sources))
            .where(table.c.id > last_id).order_by(table.c.id).limit(_BATCH)
        ).mappings().all()
        if not rows:
            return
        bind.execute(
            table.update().where(table.c.id == sa.bindparam('b_id')).values(
                {col: sa.bindparam(f'b_{col}') for col in folded}),
            [{'b_id': row['id'],
              **{f'b_{col}': search_fold(*(row[c] for c in cols))
                 for col, cols in folded.items()}}
             for row in rows],
        )
        last_id = rows[-1]['id']


def upgrade() -> None:
    for name, folded in _FOLDED.items():
        with op.batch_alter_table(name, schema=None) as batch_op:
            for col in folded:
                batch_op.add_column(sa.Column(col, sa.Text(), nullable=True))
        _backfill(name, folded)
        with op.batch_alter_table(name, schema=None) as batch_op:
            for col in folded:
                batch_op.alter_column(col, existing_type=sa.Text(), nullable=False)


def downgrade() -> None:
    for name, folded in _FOLDED.items():
        with op.batch_alter_table(name, schema=None) as batch_op:
            for col in folded:
                batch_op.drop_column(col)
