"""Payment transport: the WeChat Pay and Alipay gateways, their notification
endpoints under /pay/ (a contract: POST /pay/wechatpay/notify and
POST /pay/alipay/notify), and the queued jobs of the order lifecycle."""
from flask import Blueprint

bp = Blueprint("pay", __name__, url_prefix="/pay")

from . import alipay_views, wechatpay_views  # noqa: E402,F401  (routes)
