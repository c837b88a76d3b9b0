"""payments: stock held, second payments, abnormal and gateway refunds (issue 9, item 5)

Revision ID: e3c000000003
Revises: e2b000000002
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e3c000000003'
down_revision = 'e2b000000002'
branch_labels = None
depends_on = None


def upgrade():
    # Orders: whether the order's stock is taken and not given back.
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('holds_stock', sa.Boolean(), server_default=sa.true(), nullable=False))
    # A cancelled order gave its stock back; so did a refund of an unshipped one.
    op.execute("UPDATE orders SET holds_stock = false WHERE status = 'cancelled' OR (status = 'refunded' AND "
               "EXISTS (SELECT 1 FROM refunds r WHERE r.order_id = orders.id AND r.status = 'succeeded' "
               "AND r.return_to = 'paid'))")

    # Payments: an order keeps one; a second one is a row marked duplicate.
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('duplicate', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.drop_constraint(batch_op.f('uq_payments_order_id'), type_='unique')
        batch_op.create_index(batch_op.f('ix_payments_order_id'), ['order_id'], unique=False)
        batch_op.create_index('uq_payments_one_kept_per_order', ['order_id'], unique=True,
                              postgresql_where=sa.text('NOT duplicate'), sqlite_where=sa.text('NOT duplicate'))

    # Refunds: of one payment; abnormal; made by whom; partial ones recorded.
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('payment_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('origin', sa.String(length=16), server_default='merchant', nullable=False))
        batch_op.add_column(sa.Column('partial', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.alter_column('return_to', existing_type=sa.String(length=16), nullable=True)
        batch_op.drop_index('uq_refunds_one_live_per_order', postgresql_where=sa.text("status <> 'failed'"),
                            sqlite_where=sa.text("status <> 'failed'"))
        batch_op.drop_constraint(batch_op.f('ck_refunds_status'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_refunds_status'),
                                         "status IN ('pending', 'abnormal', 'succeeded', 'failed')")
        batch_op.create_check_constraint(batch_op.f('ck_refunds_origin'),
                                         "origin IN ('merchant', 'auto', 'gateway')")
        batch_op.create_foreign_key(batch_op.f('fk_refunds_payment_id_payments'), 'payments', ['payment_id'], ['id'])
        batch_op.create_index(batch_op.f('ix_refunds_payment_id'), ['payment_id'], unique=False)
    op.execute("UPDATE refunds SET payment_id = (SELECT p.id FROM payments p WHERE p.order_id = refunds.order_id "
               "AND NOT p.duplicate)")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_index('uq_refunds_one_live_per_payment', ['payment_id'], unique=True,
                              postgresql_where=sa.text("status <> 'failed' AND NOT partial"),
                              sqlite_where=sa.text("status <> 'failed' AND NOT partial"))


def downgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_index('uq_refunds_one_live_per_payment',
                            postgresql_where=sa.text("status <> 'failed' AND NOT partial"),
                            sqlite_where=sa.text("status <> 'failed' AND NOT partial"))
        batch_op.drop_index(batch_op.f('ix_refunds_payment_id'))
        batch_op.drop_constraint(batch_op.f('fk_refunds_payment_id_payments'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('ck_refunds_origin'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_refunds_status'), type_='check')
    # Rows the old schema cannot hold go: refunds of duplicate payments, partial and abnormal ones.
    op.execute("DELETE FROM refunds WHERE partial OR payment_id IN (SELECT id FROM payments WHERE duplicate)")
    op.execute("UPDATE refunds SET status = 'pending' WHERE status = 'abnormal'")
    op.execute("UPDATE refunds SET return_to = 'paid' WHERE return_to IS NULL")
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.create_check_constraint(batch_op.f('ck_refunds_status'),
                                         "status IN ('pending', 'succeeded', 'failed')")
        batch_op.create_index('uq_refunds_one_live_per_order', ['order_id'], unique=True,
                              postgresql_where=sa.text("status <> 'failed'"),
                              sqlite_where=sa.text("status <> 'failed'"))
        batch_op.alter_column('return_to', existing_type=sa.String(length=16), nullable=False)
        batch_op.drop_column('partial')
        batch_op.drop_column('origin')
        batch_op.drop_column('payment_id')

    op.execute("DELETE FROM payments WHERE duplicate")
    with op.batch_alter_table('payments', schema=None) as batch_op:
        batch_op.drop_index('uq_payments_one_kept_per_order', postgresql_where=sa.text('NOT duplicate'),
                            sqlite_where=sa.text('NOT duplicate'))
        batch_op.drop_index(batch_op.f('ix_payments_order_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_payments_order_id'), ['order_id'])
        batch_op.drop_column('duplicate')

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('holds_stock')
