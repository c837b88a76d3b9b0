"""scale (issue 13): indexes the pages need at a brand's size (bench/scale.py)

Revision ID: f39000000019
Revises: f28000000018
Create Date: 2026-12-01 05:00:00

"""
from alembic import op


revision = 'f39000000019'
down_revision = 'f28000000018'
branch_labels = None
depends_on = None

# (name, table, columns): each one found by bench/scale.py's EXPLAIN at 1 000 000 users,
# 100 000 distributors and 5 000 000 orders.
INDEXES = [
    # The centre's reach (sales of the unit this week and today): the unit's paid orders in a
    # time range, not every shop's orders of the week filtered down to one unit.
    ('ix_orders_unit_id_paid_at', 'orders', ['unit_id', 'paid_at']),
    # The staff's order list filtered by a distributor's mobile (handlers.order_search): one
    # distributor found by its 11 digits, not all of them read.
    ('ix_distributors_mobile', 'distributors', ['mobile']),
    # A distributor's customers (the team page and the centre, tens of thousands for the biggest):
    # their ids in order from the index alone, merged against distributors' user ids (a NOT EXISTS
    # anti-join, both sides index-only) instead of every user row read and every distributor hashed.
    ('ix_users_referrer_id_id', 'users', ['referrer_id', 'id']),
]


def upgrade():
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
