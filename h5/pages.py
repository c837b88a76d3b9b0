"""The "me" page, and pages a later issue builds, which say so politely
instead of failing."""
from __future__ import annotations

from flask import render_template

from handlers import referrals

from . import bp
from .auth import current_user, login_required

SOON: dict[str, tuple[str, str]] = {}


@bp.get("/")
@login_required
def index():
    user = current_user()
    distributor = referrals.distributor_of(user.id)
    if distributor:
        links = [("center", "分销中心"), ("qrcode", "我的二维码"), ("my_team", "我的团队"), ("income", "我的收入")]
    else:
        links = [("apply", "申请成为分销商")]
    links += [("shop", "商城"), ("my_orders", "我的订单"), ("cart_page", "购物车"), ("notification_centre", "通知中心"),
              ("leaderboard", "销售排行榜")]
    return render_template("index.html", user=user, links=links, distributor=distributor)


def _coming_soon(key: str):
    title, text = SOON[key]
    return render_template("soon.html", title=title, text=text, user=current_user())


for _key in SOON:
    bp.add_url_rule(f"/{_key}", _key, login_required(lambda _k=_key: _coming_soon(_k)))
