"""transactional outbox and notification delivery (issue 9, item 3)

Revision ID: e2b000000002
Revises: e1a000000001
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e2b000000002'
down_revision = 'e1a000000001'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
