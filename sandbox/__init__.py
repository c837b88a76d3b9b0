"""The sandbox WeChat platform, on only when ``[wechat] sandbox = true``.

It stands in for api.weixin.qq.com (``/sandbox/api``) and
open.weixin.qq.com (``/sandbox/open``) over real HTTP, with their request and
response formats and error codes, and hosts the phone simulator
(``/sandbox/``) through which a person without WeChat walks every flow.
The product talks to it exactly as to WeChat: nothing in wxbot/ or h5/ knows.
"""
from flask import Flask


def register(app: Flask, csrf) -> None:
    from .alipay import bp as alipay_bp
    from .api import bp as api_bp
    from .open import bp as open_bp
    from .simulator import bp as simulator_bp
    from .wechatpay import bp as wechatpay_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(open_bp)
    app.register_blueprint(simulator_bp)
    app.register_blueprint(wechatpay_bp)
    app.register_blueprint(alipay_bp)
    for bp in (api_bp, open_bp, simulator_bp, wechatpay_bp, alipay_bp):  # plays outside parties, who carry no CSRF token
        csrf.exempt(bp)
