"""versioned rules (issue 12)

Revision ID: ee4000000014
Revises: ed3000000013
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ee4000000014'
down_revision = 'ed3000000013'
branch_labels = None
depends_on = None


def upgrade():
    # Each saved value of a rule, in effect from its time (handlers/rules.py).
    op.create_table('rule_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('effective_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.String(length=64), nullable=True),
    sa.CheckConstraint('(cancelled_at IS NULL) = (cancelled_by IS NULL)',
                       name=op.f('ck_rule_versions_cancelled_by_someone')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_versions')),
    sa.UniqueConstraint('revision', 'key', name='uq_rule_versions_revision_key')
    )
    op.create_index('ix_rule_versions_key_effective', 'rule_versions', ['key', 'effective_from'], unique=False)
    # One row: the number of the last save, locked by savers, read by every process.
    op.create_table('rule_revision',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_rule_revision_one_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_revision'))
    )


def downgrade():
    op.drop_table('rule_revision')
    op.drop_index('ix_rule_versions_key_effective', table_name='rule_versions')
    op.drop_table('rule_versions')
