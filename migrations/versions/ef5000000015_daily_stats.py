"""statistics (issue 12)

Revision ID: ef5000000015
Revises: ee4000000014
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ef5000000015'
down_revision = 'ee4000000014'
branch_labels = None
depends_on = None

INDEXES = [
    ("ix_stats_orders_buyer_id_paid_at_id", "orders", ["buyer_id", "paid_at", "id"]),
    ("ix_stats_orders_guest_mobile_paid_at_id", "orders", ["guest_mobile", "paid_at", "id"]),
    ("ix_stats_refunds_finished_at", "refunds", ["finished_at"]),
    ("ix_stats_users_created_at", "users", ["created_at"]),
    ("ix_stats_users_attributed_at", "users", ["attributed_at"]),
    ("ix_stats_distributors_approved_at", "distributors", ["approved_at"]),
    ("ix_stats_commission_rows_created_at", "commission_rows", ["created_at"]),
    ("ix_stats_commission_rows_settled_at", "commission_rows", ["settled_at"]),
    ("ix_stats_withdrawals_decided_at", "withdrawals", ["decided_at"]),
    ("ix_stats_referral_touches_at", "referral_touches", ["at"]),
]


def upgrade():
    op.create_table(
        'daily_stats',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('paid_fen', sa.BigInteger(), nullable=False),
        sa.Column('orders_paid', sa.Integer(), nullable=False),
        sa.Column('refunded_fen', sa.BigInteger(), nullable=False),
        sa.Column('new_users', sa.Integer(), nullable=False),
        sa.Column('new_followers', sa.Integer(), nullable=False),
        sa.Column('new_customers', sa.Integer(), nullable=False),
        sa.Column('new_distributors', sa.Integer(), nullable=False),
        sa.Column('commission_accrued_fen', sa.BigInteger(), nullable=False),
        sa.Column('commission_settled_fen', sa.BigInteger(), nullable=False),
        sa.Column('withdrawals_paid_fen', sa.BigInteger(), nullable=False),
        sa.Column('computed_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('day', name=op.f('pk_daily_stats')),
    )
    op.create_table(
        'daily_unit_stats',
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('paid_fen', sa.BigInteger(), nullable=False),
        sa.Column('orders_paid', sa.Integer(), nullable=False),
        sa.Column('refunded_fen', sa.BigInteger(), nullable=False),
        sa.Column('visits', sa.Integer(), nullable=False),
        sa.Column('visitors', sa.BigInteger(), nullable=False),
        sa.Column('bound', sa.Integer(), nullable=False),
        sa.Column('first_orders', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('day', 'unit_id', name=op.f('pk_daily_unit_stats')),
    )
    op.create_table(
        'monthly_unit_stats',
        sa.Column('month', sa.Date(), nullable=False),
        sa.Column('unit_id', sa.Integer(), nullable=False),
        sa.Column('paid_fen', sa.BigInteger(), nullable=False),
        sa.Column('orders_paid', sa.Integer(), nullable=False),
        sa.Column('refunded_fen', sa.BigInteger(), nullable=False),
        sa.Column('visits', sa.Integer(), nullable=False),
        sa.Column('visitors', sa.BigInteger(), nullable=False),
        sa.Column('bound', sa.Integer(), nullable=False),
        sa.Column('first_orders', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('month', 'unit_id', name=op.f('pk_monthly_unit_stats')),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    op.drop_table('monthly_unit_stats')
    op.drop_table('daily_unit_stats')
    op.drop_table('daily_stats')
