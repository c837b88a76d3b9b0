"""H5 sessions revocable server-side (issue 9, item 8)

Revision ID: e5e000000005
Revises: e4d000000004
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e5e000000005'
down_revision = 'e4d000000004'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
