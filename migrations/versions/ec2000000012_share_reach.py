"""sharing and reach (issue 11)

Revision ID: ec2000000012
Revises: eb1000000011
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ec2000000012'
down_revision = 'eb1000000011'
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
