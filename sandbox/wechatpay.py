"""api.mch.weixin.qq.com played by the sandbox (to be written)."""
from flask import Blueprint

bp = Blueprint("sandbox_wechatpay", __name__, url_prefix="/sandbox/pay/wechatpay", template_folder="templates")
