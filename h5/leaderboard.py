"""The sales leaderboard page (PRODUCT.md flow 10): a tab per period, the
top 50 with others' names masked, and where my own unit stands."""
from __future__ import annotations

from flask import render_template, request

from handlers import leaderboard as ranking

from . import bp
from .auth import current_user, login_required

DEFAULT_PERIOD = "week"


@bp.get("/leaderboard")
@login_required
def leaderboard():
    period = request.args.get("period", DEFAULT_PERIOD)
    if period not in ranking.PERIODS:
        period = DEFAULT_PERIOD  # an old or mistyped link still shows a board
    board = ranking.board(period, user_id=current_user().id)
    return render_template("leaderboard.html", board=board, periods=ranking.PERIODS, period=period,
                           viewer=board.viewer, mask=ranking.mask, title="销售排行榜")
