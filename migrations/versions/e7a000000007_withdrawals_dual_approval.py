"""withdrawals dual approval (issue 10)

A payment above [admin] dual_approval_fen waits for a second staff member:
who asked, how and with which reference are kept on the withdrawal until
another confirms. The WeChat Pay transfer bill's last known state, when it
was created (the 24-hour confirmation window) and when its cancellation was
asked for are kept too, for the admin's withdrawals page.

Revision ID: e7a000000007
Revises: e6f000000006
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e7a000000007'
down_revision = 'e6f000000006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approval_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('approval_staff_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('approval_method', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('approval_reference', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('approval_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('approved_by', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('transfer_state', sa.String(length=24), nullable=True))
        batch_op.add_column(sa.Column('transfer_created_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_requested_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_withdrawals_approval_staff_id_staff'), 'staff',
                                    ['approval_staff_id'], ['id'])
        batch_op.create_check_constraint(batch_op.f('ck_withdrawals_approval_method'),
                                         "approval_method IS NULL OR approval_method IN ('wechat_transfer', 'manual')")
        batch_op.create_index('ix_withdrawals_status_id', ['status', 'id'], unique=False)
    # Transfers already waiting: their bill was created (package_info) around
    # when the withdrawal moved on; the request time is the nearest we know.
    op.execute("UPDATE withdrawals SET transfer_state = 'WAIT_USER_CONFIRM', transfer_created_at = requested_at "
               "WHERE status = 'transferring' AND package_info IS NOT NULL")


def downgrade():
    with op.batch_alter_table('withdrawals', schema=None) as batch_op:
        batch_op.drop_index('ix_withdrawals_status_id')
        batch_op.drop_constraint(batch_op.f('ck_withdrawals_approval_method'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_withdrawals_approval_staff_id_staff'), type_='foreignkey')
        batch_op.drop_column('cancel_requested_at')
        batch_op.drop_column('transfer_created_at')
        batch_op.drop_column('transfer_state')
        batch_op.drop_column('approved_by')
        batch_op.drop_column('approval_at')
        batch_op.drop_column('approval_reference')
        batch_op.drop_column('approval_method')
        batch_op.drop_column('approval_staff_id')
        batch_op.drop_column('approval_by')
