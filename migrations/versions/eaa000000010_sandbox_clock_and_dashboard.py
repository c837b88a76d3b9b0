"""sandbox clock and dashboard (issue 10)

Revision ID: eaa000000010
Revises: e9c000000009
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'eaa000000010'
down_revision = 'e9c000000009'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
