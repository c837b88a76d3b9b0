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
    user = current_user()
    distributor = ranking.distributor_of(user.id)
    unit_id = distributor.unit.id if distributor and distributor.unit else None
    board = ranking.board(period, unit_id)
    return render_template("leaderboard.html", board=board, periods=ranking.PERIODS, period=period,
                           distributor=distributor, mask=ranking.mask, title="销售排行榜")
