"""openapi.alipay.com played by the sandbox (to be written)."""
from flask import Blueprint

bp = Blueprint("sandbox_alipay", __name__, url_prefix="/sandbox/pay/alipay", template_folder="templates")
