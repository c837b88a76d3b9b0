"""H5 sessions revocable server-side (issue 9, item 8)

Revision ID: e5e000000005
Revises: e4d000000004
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e5e000000005'
down_revision = 'e4d000000004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('h5_sessions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_h5_sessions_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_h5_sessions'))
    )
    with op.batch_alter_table('h5_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_h5_sessions_user_id'), ['user_id'], unique=False)


def downgrade():
    with op.batch_alter_table('h5_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_h5_sessions_user_id'))

    op.drop_table('h5_sessions')
