"""a distributor's team counted from an index: users.is_distributor (issue 13)

The centre and the team page count a distributor's customers as everyone
they brought less those who became distributors. Joining the brought users
with every distributor's user id cost the biggest distributor 11 ms; a flag
on the user, set when they become a distributor (never cleared: a
distributor is frozen, not removed), lets a partial index count the recruits.
Also drops two indexes that others cover, each a write per new row:
ix_users_referrer_id (ix_users_referrer_id_id leads with the same column) and
ix_orders_unit_id_paid_at (ix_orders_unit_id_paid_at_sales, f5b000000021);
counts a unit's touches of the week from (unit_id, at) instead of
intersecting all of the unit's touches with the week's; and reads a
distributor's sales from (distributor_id, id) with the amounts included,
where the biggest one's 275 000 orders made a sequential scan.

Revision ID: f7d000000023
Revises: f6c000000022
Create Date: 2026-12-01 12:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'f7d000000023'
down_revision = 'f6c000000022'
branch_labels = None
depends_on = None

RECRUITS = "is_distributor"


def upgrade():
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("is_distributor", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE users SET is_distributor = true WHERE id IN (SELECT user_id FROM distributors)")
    op.create_index("ix_users_referrer_id_recruits", "users", ["referrer_id"], unique=False,
                    postgresql_where=sa.text(RECRUITS), sqlite_where=sa.text(RECRUITS))
    op.drop_index("ix_users_referrer_id", table_name="users")
    op.drop_index("ix_orders_unit_id_paid_at", table_name="orders")
    op.create_index("ix_referral_touches_unit_id_at", "referral_touches", ["unit_id", "at"], unique=False,
                    postgresql_include=["outcome"])
    op.drop_index("ix_referral_touches_unit_id", table_name="referral_touches")
    op.drop_index("ix_orders_distributor_id_id", table_name="orders")
    op.create_index("ix_orders_distributor_id_id", "orders", ["distributor_id", "id"], unique=False,
                    postgresql_include=["paid_at", "total_fen"])


def downgrade():
    op.drop_index("ix_orders_distributor_id_id", table_name="orders")
    op.create_index("ix_orders_distributor_id_id", "orders", ["distributor_id", "id"], unique=False)
    op.create_index("ix_referral_touches_unit_id", "referral_touches", ["unit_id"], unique=False)
    op.drop_index("ix_referral_touches_unit_id_at", table_name="referral_touches")
    op.create_index("ix_orders_unit_id_paid_at", "orders", ["unit_id", "paid_at"], unique=False)
    op.create_index("ix_users_referrer_id", "users", ["referrer_id"], unique=False)
    op.drop_index("ix_users_referrer_id_recruits", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("is_distributor")
