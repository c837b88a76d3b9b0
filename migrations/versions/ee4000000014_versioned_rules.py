"""versioned rules (issue 12)

Revision ID: ee4000000014
Revises: ed3000000013
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ee4000000014'
down_revision = 'ed3000000013'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
