"""what went back of each order's sale, kept on the order: orders.refunded_fen (issue 13)

A distributor's net sales (the staff's detail page and list) and a unit's
week of sales (the centre) subtracted each order's succeeded refunds by
joining the refunds: for the biggest seller, a sequential scan of 252 000
refunds, or 4 900 index probes for a week. The sum is now kept on the order
when a refund lands, under the order's lock, and carried in the two indexes
those pages read, so both are index-only. Automatic refunds and refunds of a
duplicate payment are money the order never kept: not counted (they were,
wrongly, subtracted from net sales before).

Revision ID: f8e000000024
Revises: f7d000000023
Create Date: 2026-12-01 15:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'f8e000000024'
down_revision = 'f7d000000023'
branch_labels = None
depends_on = None

BACKFILL = """
UPDATE orders SET refunded_fen = sale.fen
FROM (SELECT refunds.order_id, SUM(refunds.amount_fen) AS fen
      FROM refunds LEFT JOIN payments ON payments.id = refunds.payment_id
      WHERE refunds.status = 'succeeded' AND refunds.origin <> 'auto' AND NOT COALESCE(payments.duplicate, false)
      GROUP BY refunds.order_id) AS sale
WHERE orders.id = sale.order_id
"""


def _indexes(refunded: list[str]) -> None:
    op.drop_index("ix_orders_distributor_id_id", table_name="orders")
    op.create_index("ix_orders_distributor_id_id", "orders", ["distributor_id", "id"], unique=False,
                    postgresql_include=["paid_at", "total_fen", *refunded])
    op.drop_index("ix_orders_unit_id_paid_at_sales", table_name="orders")
    op.create_index("ix_orders_unit_id_paid_at_sales", "orders", ["unit_id", "paid_at"], unique=False,
                    postgresql_include=["status", "total_fen", *refunded, "id"])


def upgrade():
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("refunded_fen", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute(BACKFILL)
    with op.batch_alter_table("orders") as batch:
        batch.create_check_constraint(batch.f("ck_orders_refunded"), "refunded_fen >= 0 AND refunded_fen <= total_fen")
    _indexes(["refunded_fen"])


def downgrade():
    _indexes([])
    with op.batch_alter_table("orders") as batch:
        batch.drop_constraint(batch.f("ck_orders_refunded"), type_="check")
        batch.drop_column("refunded_fen")
