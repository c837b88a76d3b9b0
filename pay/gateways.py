"""The gateway behind each payment channel."""
from __future__ import annotations

from flask import current_app

from handlers.payments import Gateway
from models import PayChannel


def gateway_for(channel: str | PayChannel) -> Gateway:
    channel = PayChannel(channel)
    if channel is PayChannel.WECHATPAY:
        from .wechatpay import WeChatPayGateway

        return WeChatPayGateway.from_settings()
    from .alipay import AlipayGateway

    return AlipayGateway.from_settings()


def configured_channels() -> list[PayChannel]:
    """The channels this shop takes payments on (an order may have been
    started on any of them)."""
    settings = current_app.config["SETTINGS"]
    found = []
    if settings["wechatpay"]["mchid"]:
        found.append(PayChannel.WECHATPAY)
    if settings["alipay"]["app_id"]:
        found.append(PayChannel.ALIPAY)
    return found
