"""The gateway behind each payment channel."""
from __future__ import annotations

from handlers.payments import Gateway
from models import PayChannel


def gateway_for(channel: str | PayChannel) -> Gateway:
    channel = PayChannel(channel)
    if channel is PayChannel.WECHATPAY:
        from .wechatpay import WeChatPayGateway

        return WeChatPayGateway.from_settings()
    from .alipay import AlipayGateway

    return AlipayGateway.from_settings()
