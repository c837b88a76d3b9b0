"""reconciliation (issue 12)

Revision ID: f28000000018
Revises: f17000000017
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f28000000018'
down_revision = 'f17000000017'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('reconcile_days',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('differences', sa.Integer(), nullable=False),
    sa.Column('gateway_rows', sa.Integer(), nullable=False),
    sa.Column('local_rows', sa.Integer(), nullable=False),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.Column('run_by', sa.String(length=64), nullable=False),
    sa.Column('ran_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('clean', 'differences', 'failed')", name=op.f('ck_reconcile_days_state')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_days')),
    sa.UniqueConstraint('day', 'channel', name='uq_reconcile_days_day_channel')
    )
    op.create_table('reconcile_differences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('ref', sa.String(length=64), nullable=False),
    sa.Column('problem', sa.String(length=16), nullable=False),
    sa.Column('gateway_fen', sa.BigInteger(), nullable=True),
    sa.Column('local_fen', sa.BigInteger(), nullable=True),
    sa.Column('gateway_state', sa.String(length=32), nullable=False),
    sa.Column('local_state', sa.String(length=32), nullable=False),
    sa.Column('gateway_id', sa.String(length=64), nullable=False),
    sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolved_staff_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.CheckConstraint("kind IN ('trade', 'refund', 'transfer')", name=op.f('ck_reconcile_differences_kind')),
    sa.CheckConstraint("problem IN ('gateway_only', 'local_only', 'amount', 'state')",
                       name=op.f('ck_reconcile_differences_problem')),
    sa.ForeignKeyConstraint(['resolved_staff_id'], ['staff.id'],
                            name=op.f('fk_reconcile_differences_resolved_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconcile_differences')),
    sa.UniqueConstraint('day', 'channel', 'kind', 'ref', 'problem', name='uq_reconcile_differences_key')
    )
    op.create_index('ix_reconcile_differences_day', 'reconcile_differences', ['day', 'channel'], unique=False)


def downgrade():
    op.drop_index('ix_reconcile_differences_day', table_name='reconcile_differences')
    op.drop_table('reconcile_differences')
    op.drop_table('reconcile_days')
