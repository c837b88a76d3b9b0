"""orders admin and buyer notices (issue 10)

Revision ID: e8b000000008
Revises: e7a000000007
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e8b000000008'
down_revision = 'e7a000000007'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
