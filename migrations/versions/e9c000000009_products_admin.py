"""products admin: display order, the new-product form's one-time key (issue 10)

Revision ID: e9c000000009
Revises: e8b000000008
Create Date: 2026-12-01 00:20:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'e9c000000009'
down_revision = 'e8b000000008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        # Existing products keep their order (by id) with every sort_order 0.
        batch_op.add_column(sa.Column('sort_order', sa.Integer(), server_default='0', nullable=False))
        # A new-product form submitted twice is one product.
        batch_op.add_column(sa.Column('create_key', sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_products_create_key'), ['create_key'])
        batch_op.create_index('ix_products_shelf_order', ['on_sale', 'sort_order', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_index('ix_products_shelf_order')
        batch_op.drop_constraint(batch_op.f('uq_products_create_key'), type_='unique')
        batch_op.drop_column('create_key')
        batch_op.drop_column('sort_order')
