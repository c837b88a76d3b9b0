"""distributors admin (issue 12)

Revision ID: ed3000000013
Revises: ec2000000012
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ed3000000013'
down_revision = 'ec2000000012'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
