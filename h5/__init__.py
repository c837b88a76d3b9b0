"""Server-rendered H5 pages for phones inside WeChat (WeUI, Chinese, 375 px)."""
from datetime import datetime

from flask import Blueprint

from handlers.clock import CHINA

bp = Blueprint("h5", __name__, url_prefix="/h5", static_folder="static",
               template_folder="templates")


@bp.app_template_filter("cst")
def china_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Times are kept in UTC and shown in China Standard Time."""
    return value.astimezone(CHINA).strftime(fmt) if value else ""


from . import auth, distribution, income, leaderboard, media, orders, pages, shop  # noqa: E402,F401  (routes)
