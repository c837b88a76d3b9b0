"""the webhook's follow in one or two statements (issue 13)

Revision ID: f6c000000022
Revises: f5b000000021
Create Date: 2026-12-01 09:00:00

"""
import sqlalchemy as sa
from alembic import op


revision = 'f6c000000022'
down_revision = 'f5b000000021'
branch_labels = None
depends_on = None

# New followers waiting for their profile batch (wxbot.jobs.fetch_profiles),
# oldest first: a partial index, which the INDEXES list cannot express.
AWAITING = "profile_checked_at IS NULL"


def upgrade():
    op.create_index("ix_users_awaiting_profile", "users", ["created_at"], unique=False,
                    postgresql_where=sa.text(AWAITING), sqlite_where=sa.text(AWAITING))


def downgrade():
    op.drop_index("ix_users_awaiting_profile", table_name="users")
