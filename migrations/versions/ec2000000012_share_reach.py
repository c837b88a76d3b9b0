"""sharing and reach (issue 11)

Revision ID: ec2000000012
Revises: eb1000000011
Create Date: 2026-12-01 04:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'ec2000000012'
down_revision = 'eb1000000011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('unit_visits',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=True),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('visitor', sa.String(length=64), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_unit_visits_product_id_products')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_unit_visits_unit_id_units')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_unit_visits_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_unit_visits'))
    )
    op.create_index('ix_unit_visits_unit_id_at', 'unit_visits', ['unit_id', 'at'], unique=False)
    op.create_index('ix_unit_visits_at', 'unit_visits', ['at'], unique=False)


def downgrade():
    op.drop_index('ix_unit_visits_at', table_name='unit_visits')
    op.drop_index('ix_unit_visits_unit_id_at', table_name='unit_visits')
    op.drop_table('unit_visits')
