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

# Every money column: integer fen, 64-bit from here on.
MONEY = {
    'orders': ('goods_fen', 'total_fen'),
    'order_lines': ('unit_price_fen', 'amount_fen'),
    'payments': ('amount_fen',),
    'refunds': ('amount_fen',),
    'products': ('price_fen',),
    'commission_rows': ('base_fen', 'amount_fen'),
    'balances': ('frozen_fen', 'withdrawable_fen', 'reserved_fen', 'withdrawn_fen', 'lifetime_fen'),
    'withdrawals': ('amount_fen', 'fee_fen'),
}
TOTAL_RATE = 'COALESCE(level1_rate_bp, 0) + COALESCE(level2_rate_bp, 0) <= 10000'


def _retype(old, new):
    for table, columns in MONEY.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.alter_column(column, existing_type=old, type_=new, existing_nullable=False)


def upgrade():
    _retype(sa.Integer(), sa.BigInteger())
    # A product's two levels together can never exceed the whole price
    # (the merchant's lower cap, [distribution] max_total_rate_bp, is kept
    # by the catalogue and again when commission is posted).
    op.execute("UPDATE products SET level2_rate_bp = 10000 - COALESCE(level1_rate_bp, 0) "
               "WHERE COALESCE(level1_rate_bp, 0) + COALESCE(level2_rate_bp, 0) > 10000")
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_check_constraint(batch_op.f('ck_products_total_rate'), TOTAL_RATE)
    # The checkout form's one-time key: a form submitted twice is one order.
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('checkout_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_orders_checkout_key'), ['checkout_key'])


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_orders_checkout_key'), type_='unique')
        batch_op.drop_column('checkout_key')
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_products_total_rate'), type_='check')
    # Amounts a 32-bit column cannot hold would fail here: downgrading is
    # refused by the database rather than truncating money.
    _retype(sa.BigInteger(), sa.Integer())
