"""the webhook's follow in one or two statements (issue 13)

Revision ID: f6c000000022
Revises: f5b000000021
Create Date: 2026-12-01 09:00:00

"""
from alembic import op  # noqa: F401


revision = 'f6c000000022'
down_revision = 'f5b000000021'
branch_labels = None
depends_on = None

# Filled by the webhook work of issue 13; left empty when it needs no change.
INDEXES: list[tuple[str, str, list[str]]] = []


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
