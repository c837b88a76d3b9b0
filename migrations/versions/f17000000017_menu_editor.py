"""menu editor (issue 12)

Revision ID: f17000000017
Revises: f06000000016
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f17000000017'
down_revision = 'f06000000016'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
