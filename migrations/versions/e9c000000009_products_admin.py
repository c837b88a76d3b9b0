"""products admin (issue 10)

Revision ID: e9c000000009
Revises: e8b000000008
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e9c000000009'
down_revision = 'e8b000000008'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
