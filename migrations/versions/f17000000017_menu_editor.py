"""menu editor (issue 12)

Revision ID: f17000000017
Revises: f06000000016
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f17000000017'
down_revision = 'f06000000016'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('menu_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('definition', sa.JSON(), nullable=False),
    sa.Column('saved_by', sa.String(length=64), nullable=False),
    sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('pushed_by', sa.String(length=64), nullable=True),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('push_no', sa.Integer(), nullable=True),
    sa.CheckConstraint('push_no IS NULL OR (push_no > 0 AND pushed_at IS NOT NULL AND pushed_by IS NOT NULL)',
                       name=op.f('ck_menu_versions_pushed_when_numbered')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_menu_versions')),
    sa.UniqueConstraint('push_no', name=op.f('uq_menu_versions_push_no'))
    )


def downgrade():
    op.drop_table('menu_versions')
