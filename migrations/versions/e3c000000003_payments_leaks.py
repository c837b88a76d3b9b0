"""payments: stock held, second payments, abnormal and gateway refunds (issue 9, item 5)

Revision ID: e3c000000003
Revises: e2b000000002
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e3c000000003'
down_revision = 'e2b000000002'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
