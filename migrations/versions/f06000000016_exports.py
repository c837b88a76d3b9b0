"""exports (issue 12)

Revision ID: f06000000016
Revises: ef5000000015
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f06000000016'
down_revision = 'ef5000000015'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
