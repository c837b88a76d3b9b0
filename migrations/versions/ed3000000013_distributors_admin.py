"""distributors admin (issue 12)

A frozen distributor keeps why and since when; the list filters by join
date (an index, the pages being keyset pages by id otherwise); the
distributor is told of a freeze and an unfreeze: two notification kinds.

Revision ID: ed3000000013
Revises: ec2000000012
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ed3000000013'
down_revision = 'ec2000000012'
branch_labels = None
depends_on = None

OLD_KINDS = ('new_member', 'new_order', 'commission_settled', 'application_approved', 'application_rejected',
             'withdrawal_paid', 'withdrawal_rejected', 'order_paid', 'order_shipped', 'order_refunded',
             'commission_clawed_back')
NEW_KINDS = OLD_KINDS + ('distributor_frozen', 'distributor_unfrozen')


def _kinds(kinds):
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def upgrade():
    with op.batch_alter_table('distributors', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frozen_reason', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_distributors_approved_at'), ['approved_at'], unique=False)
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_notifications_kind'), _kinds(NEW_KINDS))


def downgrade():
    op.execute("DELETE FROM notifications WHERE kind IN ('distributor_frozen', 'distributor_unfrozen')")
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_notifications_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_notifications_kind'), _kinds(OLD_KINDS))
    with op.batch_alter_table('distributors', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_distributors_approved_at'))
        batch_op.drop_column('frozen_at')
        batch_op.drop_column('frozen_reason')
