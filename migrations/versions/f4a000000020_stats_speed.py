"""statistics at 5 million orders (issue 12)

Revision ID: f4a000000020
Revises: f39000000019
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'f4a000000020'
down_revision = 'f39000000019'
branch_labels = None
depends_on = None

FIGURES = ['paid_fen', 'orders_paid', 'refunded_fen', 'visits', 'visitors', 'bound', 'first_orders']

# The statistics page ranks units (top sales, funnel) by reading only the first rows of each
# stored day or month in order of paid sales, visits, bound customers or first orders, then
# sums those few units exactly (handlers.stats): (day, figure, unit_id) for the ordered reads,
# (unit_id, day, every figure) for the sums, from the index alone.
INDEXES = [
    ('ix_daily_unit_stats_day_paid_fen', 'daily_unit_stats', ['day', 'paid_fen', 'unit_id']),
    ('ix_daily_unit_stats_day_visits', 'daily_unit_stats', ['day', 'visits', 'unit_id']),
    ('ix_daily_unit_stats_day_bound', 'daily_unit_stats', ['day', 'bound', 'unit_id']),
    ('ix_daily_unit_stats_day_first_orders', 'daily_unit_stats', ['day', 'first_orders', 'unit_id']),
    ('ix_daily_unit_stats_unit_id_day_figures', 'daily_unit_stats', ['unit_id', 'day', *FIGURES]),
    ('ix_monthly_unit_stats_month_paid_fen', 'monthly_unit_stats', ['month', 'paid_fen', 'unit_id']),
    ('ix_monthly_unit_stats_month_visits', 'monthly_unit_stats', ['month', 'visits', 'unit_id']),
    ('ix_monthly_unit_stats_month_bound', 'monthly_unit_stats', ['month', 'bound', 'unit_id']),
    ('ix_monthly_unit_stats_month_first_orders', 'monthly_unit_stats', ['month', 'first_orders', 'unit_id']),
    ('ix_monthly_unit_stats_unit_id_month_figures', 'monthly_unit_stats', ['unit_id', 'month', *FIGURES]),
    # Today's parts count a visitor at their first visit of the day to the unit (so the parts
    # add up): "no earlier visit of theirs today" is one probe.
    ('ix_stats_unit_visits_unit_id_visitor_at', 'unit_visits', ['unit_id', 'visitor', 'at']),
]

# The shop's own funnel totals per day (the sums of its units' rows), so the page's
# "all units" line reads one row a day instead of every unit's.
COLUMNS = [('visits', sa.Integer()), ('visitors', sa.BigInteger()), ('bound', sa.Integer()),
           ('first_orders', sa.Integer())]


def upgrade():
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, type_ in COLUMNS:
        if postgres:  # IF NOT EXISTS: the bench database may have them already
            op.execute(f"ALTER TABLE daily_stats ADD COLUMN IF NOT EXISTS {name} {type_.compile(op.get_bind().dialect)}"
                       " NOT NULL DEFAULT 0")
        else:
            op.add_column('daily_stats', sa.Column(name, type_, nullable=False, server_default='0'))
    sums = ", ".join(f"{name} = coalesce((SELECT sum(u.{name}) FROM daily_unit_stats u"
                     f" WHERE u.day = daily_stats.day), 0)" for name, _ in COLUMNS)
    op.execute(f"UPDATE daily_stats SET {sums}")
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns, unique=False, if_not_exists=True)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    with op.batch_alter_table('daily_stats') as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
