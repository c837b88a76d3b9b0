"""Queued jobs of the order lifecycle: the timed moves (run at their time by
RQ's scheduler) and the refund request to the gateway."""
from __future__ import annotations

from handlers import orders
from handlers.outbox import job


@job
def expire(order_no: str) -> None:
    orders.expire(order_no)


@job
def auto_confirm(order_no: str) -> None:
    orders.auto_confirm(order_no)


@job
def request_refund(out_refund_no: str) -> None:
    """Ask the order's gateway for the refund; its notification finishes it."""
    from handlers import payments
    from models import Order, RefundStatus, db

    from .gateways import gateway_for

    refund = payments.find_refund(out_refund_no)
    if refund is None or refund.status != RefundStatus.PENDING.value:
        return
    order = db.session.get(Order, refund.order_id)
    gateway_for(order.pay_channel).refund(order, refund)


@job
def settle_order(order_id: int) -> None:
    """The order's freeze window is over: its commission becomes withdrawable."""
    from handlers import commissions

    commissions.settle_order(order_id)
