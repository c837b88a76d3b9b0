"""orders admin and buyer notices (issue 10)

The staff's order list filters by state, distributor (either level), buyer
phone and date, newest first: an index per filter ending in id, so each page
is an index range scan at any number of orders. The buyer is told about
their own orders, and a distributor about commission a refund takes back:
four new notification kinds.

Revision ID: e8b000000008
Revises: e7a000000007
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e8b000000008'
down_revision = 'e7a000000007'
branch_labels = None
depends_on = None

OLD_KINDS = ('new_member', 'new_order', 'commission_settled', 'application_approved', 'application_rejected',
             'withdrawal_paid', 'withdrawal_rejected')
NEW_KINDS = OLD_KINDS + ('order_paid', 'order_shipped', 'order_refunded', 'commission_clawed_back')
INDEXES = [
    ('ix_orders_status_id', ['status', 'id']),
    ('ix_orders_distributor_id_id', ['distributor_id', 'id']),
    ('ix_orders_parent_distributor_id_id', ['parent_distributor_id', 'id']),
    ('ix_orders_receiver_mobile_id', ['receiver_mobile', 'id']),
    ('ix_orders_created_at', ['created_at']),
    ('ix_orders_paid_at', ['paid_at']),
]


def _kinds(kinds):
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def upgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_notifications_kind'), _kinds(NEW_KINDS))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for name, columns in INDEXES:
            batch_op.create_index(name, columns, unique=False)


def downgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        for name, _ in reversed(INDEXES):
            batch_op.drop_index(name)
    op.execute("DELETE FROM notifications WHERE kind IN ('order_paid', 'order_shipped', 'order_refunded', "
               "'commission_clawed_back')")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_notifications_kind'), _kinds(OLD_KINDS))
