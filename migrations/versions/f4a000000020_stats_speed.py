"""statistics at 5 million orders (issue 12)

Revision ID: f4a000000020
Revises: f39000000019
Create Date: 2026-12-01 09:00:00

"""
from alembic import op  # noqa: F401


revision = 'f4a000000020'
down_revision = 'f39000000019'
branch_labels = None
depends_on = None

# Filled by the statistics work of issue 12; left empty when it needs no change.
INDEXES: list[tuple[str, str, list[str]]] = []


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
