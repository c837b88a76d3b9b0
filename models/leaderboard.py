"""Indexes the sales leaderboard reads by (handlers.leaderboard); its figures
themselves live in Redis, rebuilt from payments and refunds."""
from __future__ import annotations

from sqlalchemy import Index, text

from .distributor import Distributor
from .payment import Payment

# The board leaves frozen distributors out on every read: a few rows, found without reading them all.
FROZEN_DISTRIBUTORS = Index("ix_distributors_frozen", Distributor.id,
                            postgresql_where=text("status = 'frozen'"), sqlite_where=text("status = 'frozen'"))
# Sales by time of payment (the board without Redis, a rebuild's periods).
PAYMENTS_BY_TIME = Index("ix_payments_paid_at", Payment.paid_at)
