"""webhook: push keys unique in the database (issue 9, item 2)

Revision ID: e1a000000001
Revises: 13a48171909d
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e1a000000001'
down_revision = '13a48171909d'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
