"""sandbox clock and dashboard (issue 10)

Revision ID: eaa000000010
Revises: e9c000000009
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'eaa000000010'
down_revision = 'e9c000000009'
branch_labels = None
depends_on = None


def upgrade():
    # The try-out's clock offset: one row (id 1), read by every process.
    op.create_table('sandbox_clock',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('offset_seconds', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_sandbox_clock_one_row')),
    sa.CheckConstraint('offset_seconds >= 0', name=op.f('ck_sandbox_clock_forward_only')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_clock'))
    )


def downgrade():
    op.drop_table('sandbox_clock')
