"""pages at a brand's size (issue 13)

Revision ID: f5b000000021
Revises: f4a000000020
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'f5b000000021'
down_revision = 'f4a000000020'
branch_labels = None
depends_on = None

# (name, table, columns): each one found by bench/scale.py's EXPLAIN at 1 000 000 users,
# 100 000 distributors and 5 000 000 orders. IF NOT EXISTS: on the bench database they were
# made by hand first (CREATE INDEX CONCURRENTLY, same names and columns).
INDEXES = [
    # The team page's newest customers of a distributor with tens of thousands: read newest first
    # from the index and stopped at the page's 100, not every customer sorted.
    ('ix_users_referrer_id_attributed_at', 'users', ['referrer_id', 'attributed_at']),
    # The income page's rows, newest first: the distributor's last 100, not the table walked by id.
    ('ix_commission_rows_distributor_id_id', 'commission_rows', ['distributor_id', 'id']),
    # The income page's 30 days summed by day: the month's rows (24 000 for the biggest) read from
    # the index alone, not fetched one by one from the table.
    ('ix_commission_rows_distributor_id_created_at_state_amount', 'commission_rows',
     ['distributor_id', 'created_at', 'state', 'amount_fen']),
    # What was refunded of each order the centre's reach and the distributors list sum (a probe per
    # order): answered from the index, not from the refund's row.
    ('ix_refunds_order_id_status_amount', 'refunds', ['order_id', 'status', 'amount_fen']),
]

# The centre's reach: the biggest unit's orders paid this week (thousands) summed from the index
# alone — the planner otherwise walks every shop's week by paid_at. INCLUDE is PostgreSQL's; on
# SQLite it is the plain (unit_id, paid_at).
SALES = ('ix_orders_unit_id_paid_at_sales', 'orders', ['unit_id', 'paid_at'], ['status', 'total_fen', 'id'])

# The staff's order list by a part of a distributor's name: a GIN index of each name's characters
# (string_to_array(name, NULL) splits into characters), so that only names holding every character
# typed are read before the LIKE; a trigram index would serve nothing under three characters, and
# most Chinese names have two or three. SQLite has no such function (it reads its small tables with
# LIKE): there the name is a plain index on the column, so that the models compare alike.
NAME_CHARS = 'ix_distributors_real_name_chars'


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False, if_not_exists=True)
    name, table, columns, include = SALES
    op.create_index(name, table, columns, postgresql_include=include, if_not_exists=True)
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index(NAME_CHARS, 'distributors', [sa.text('string_to_array(real_name, NULL)')],
                        postgresql_using='gin', if_not_exists=True)
    else:
        op.create_index(NAME_CHARS, 'distributors', ['real_name'], if_not_exists=True)


def downgrade():
    op.drop_index(NAME_CHARS, table_name='distributors')
    op.drop_index(SALES[0], table_name=SALES[1])
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
