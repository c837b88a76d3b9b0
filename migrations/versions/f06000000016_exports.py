"""exports (issue 12)

Revision ID: f06000000016
Revises: ef5000000015
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'f06000000016'
down_revision = 'ef5000000015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('exports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('request_key', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('filters', sa.JSON(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.String(length=128), nullable=False),
    sa.Column('stored', sa.String(length=64), nullable=False),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('queued', 'done', 'failed', 'expired')", name=op.f('ck_exports_state')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_exports_staff_id_staff')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports')),
    sa.UniqueConstraint('request_key', name=op.f('uq_exports_request_key'))
    )
    op.create_index('ix_exports_staff', 'exports', ['staff_id', 'id'], unique=False)
    op.create_index('ix_exports_expires', 'exports', ['state', 'expires_at'], unique=False)


def downgrade():
    op.drop_index('ix_exports_expires', table_name='exports')
    op.drop_index('ix_exports_staff', table_name='exports')
    op.drop_table('exports')
