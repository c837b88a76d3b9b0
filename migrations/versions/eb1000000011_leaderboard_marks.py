"""leaderboard (issue 11)

Revision ID: eb1000000011
Revises: eaa000000010
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'eb1000000011'
down_revision = 'eaa000000010'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
