"""statistics (issue 12)

Revision ID: ef5000000015
Revises: ee4000000014
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ef5000000015'
down_revision = 'ee4000000014'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
