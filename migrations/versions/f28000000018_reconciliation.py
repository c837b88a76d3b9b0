"""reconciliation (issue 12)

Revision ID: f28000000018
Revises: f17000000017
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f28000000018'
down_revision = 'f17000000017'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
