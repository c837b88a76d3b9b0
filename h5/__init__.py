"""Server-rendered H5 pages for phones inside WeChat (WeUI, Chinese, 375 px)."""
from flask import Blueprint

bp = Blueprint("h5", __name__, url_prefix="/h5", static_folder="static",
               template_folder="templates")

from . import auth, pages  # noqa: E402,F401  (routes)
