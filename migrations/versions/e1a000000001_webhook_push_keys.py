"""webhook: push keys unique in the database (issue 9, item 2)

Revision ID: e1a000000001
Revises: 13a48171909d
Create Date: 2026-11-30 21:10:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e1a000000001'
down_revision = '13a48171909d'
branch_labels = None
depends_on = None


def upgrade():
    # One row per WeChat push whose work was done, written in the same
    # transaction as the work: a replay after Redis lost its keys does nothing twice.
    op.create_table('wx_pushes',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('query_key', sa.String(length=64), nullable=False),
    sa.Column('reply', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_wx_pushes')),
    sa.UniqueConstraint('query_key', name=op.f('uq_wx_pushes_query_key'))
    )


def downgrade():
    op.drop_table('wx_pushes')
