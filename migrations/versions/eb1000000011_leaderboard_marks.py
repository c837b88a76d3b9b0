"""leaderboard (issue 11): indexes for frozen distributors and payments by time

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
    op.create_index('ix_distributors_frozen', 'distributors', ['id'], unique=False,
                    postgresql_where=sa.text("status = 'frozen'"), sqlite_where=sa.text("status = 'frozen'"))
    op.create_index('ix_payments_paid_at', 'payments', ['paid_at'], unique=False)


def downgrade():
    op.drop_index('ix_payments_paid_at', table_name='payments')
    op.drop_index('ix_distributors_frozen', table_name='distributors')
