"""transactional outbox and notification delivery (issue 9, item 3)

Revision ID: e2b000000002
Revises: e1a000000001
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e2b000000002'
down_revision = 'e1a000000001'
branch_labels = None
depends_on = None


NOT_DONE = sa.text("state <> 'done'")
PENDING = sa.text("state = 'pending'")


def upgrade():
    op.create_table('outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task', sa.String(length=128), nullable=False),
    sa.Column('args', sa.JSON(), nullable=False),
    sa.Column('key', sa.String(length=160), nullable=True),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'done', 'failed')", name=op.f('ck_outbox_state')),
    sa.CheckConstraint('attempts >= 0', name=op.f('ck_outbox_attempts')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox'))
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index('uq_outbox_key_live', ['key'], unique=True,
                              postgresql_where=NOT_DONE, sqlite_where=NOT_DONE)
        batch_op.create_index('ix_outbox_pending_due', ['due_at'], unique=False,
                              postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.create_index('ix_outbox_state_id', ['state', 'id'], unique=False)

    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_column('sent_at')

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_state_id')
        batch_op.drop_index('ix_outbox_pending_due', postgresql_where=PENDING, sqlite_where=PENDING)
        batch_op.drop_index('uq_outbox_key_live', postgresql_where=NOT_DONE, sqlite_where=NOT_DONE)

    op.drop_table('outbox')
