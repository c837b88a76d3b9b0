"""withdrawals dual approval (issue 10)

Revision ID: e7a000000007
Revises: e6f000000006
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e7a000000007'
down_revision = 'e6f000000006'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
