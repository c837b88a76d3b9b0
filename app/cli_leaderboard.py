"""``flask --app wsgi leaderboard …``: The sales leaderboard: rebuild from SQL."""
from __future__ import annotations

from flask.cli import AppGroup

leaderboard_cli = AppGroup("leaderboard", help="The sales leaderboard: rebuild from SQL.")
