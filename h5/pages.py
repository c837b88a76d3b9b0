"""Pages. Those a later issue builds say so, politely, instead of failing."""
from __future__ import annotations

from flask import render_template

from . import bp
from .auth import current_user, login_required

SOON = {
    "shop": ("商城", "商品正在上架中，很快就能在这里选购下单。"),
    "apply": ("申请成为分销商", "分销商申请即将开放：填写姓名、手机号和申请理由即可提交。"),
    "qrcode": ("我的二维码", "成为分销商后，这里会有你的专属二维码海报、邀请码和小店链接。"),
    "income": ("我的收入", "佣金、可提现金额和提现记录即将在这里展示。"),
    "leaderboard": ("销售排行榜", "今日、本周、本月和总销售排行即将上线。"),
    "center": ("分销中心", "收入、团队、订单和二维码，分销商的一切都在这里。"),
}


@bp.get("/")
@login_required
def index():
    return render_template("index.html", user=current_user(), pages=SOON)


def _coming_soon(key: str):
    title, text = SOON[key]
    return render_template("soon.html", title=title, text=text, user=current_user())


for _key in SOON:
    bp.add_url_rule(f"/{_key}", _key, login_required(lambda _k=_key: _coming_soon(_k)))
