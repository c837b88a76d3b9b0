"""Queued jobs of the order lifecycle: the timed moves (outbox rows the relay
hands to RQ when due) and the refund request to the gateway."""
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


@job
def create_transfer(out_bill_no: str) -> None:
    """Create the WeChat Pay transfer bill of a withdrawal the merchant pays
    (``withdrawals transfer ID``) and keep its package_info for the
    distributor's confirm page. Retried on a passing failure with the same
    out_bill_no (WeChat Pay treats it as the same bill); a definitive refusal
    fails the withdrawal and returns the money — unless WeChat Pay has the
    bill after all, whose own state then decides."""
    import logging

    from sqlalchemy import select

    from handlers import withdrawals
    from models import Distributor, Withdrawal, WithdrawalStatus, db

    from .wechatpay import TransferRefused, WeChatPayGateway, transfer_failure

    withdrawal = db.session.scalars(select(Withdrawal).where(Withdrawal.out_bill_no == out_bill_no)).one_or_none()
    if withdrawal is None or withdrawal.status != WithdrawalStatus.TRANSFERRING.value or withdrawal.package_info:
        return  # unknown, decided already, or created by an earlier run
    if withdrawals.before_creating_transfer(out_bill_no).status != WithdrawalStatus.TRANSFERRING.value:
        return  # a claw-back since: not transferred, the money is back in the balance
    distributor = db.session.get(Distributor, withdrawal.distributor_id)
    gateway = WeChatPayGateway.from_settings()
    try:
        bill = gateway.create_transfer(withdrawal, distributor.user.openid, distributor.real_name)
    except TransferRefused as refused:
        bill = gateway.query_transfer(out_bill_no)
        if bill is None:
            logging.getLogger(__name__).warning("transfer %s refused: %s", out_bill_no, refused)
            withdrawals.transfer_finished(out_bill_no, "FAIL", refused.message)
            return
    if bill.final:
        withdrawals.transfer_finished(out_bill_no, bill.state,
                                      transfer_failure(bill.fail_reason) if bill.state == "FAIL" else "")
    elif bill.package_info:
        withdrawals.transfer_created(out_bill_no, bill.package_info)
    else:  # ACCEPTED / PROCESSING: the package comes a moment later; ask again
        from .wechatpay import WeChatPayError

        raise WeChatPayError("微信支付仍在受理转账", bill.state, out_bill_no)


@job
def sync_transfers() -> int:
    """Ask WeChat Pay about every transfer still waiting: a lost notification
    (or WeChat's own cancellation of a bill nobody confirmed) still finishes
    the withdrawal. Run by ``flask --app wsgi withdrawals sync``."""
    from handlers import withdrawals

    from .wechatpay import WeChatPayGateway, transfer_failure

    gateway, finished = WeChatPayGateway.from_settings(), 0
    for w in withdrawals.transferring():
        bill = gateway.query_transfer(w.out_bill_no)
        if bill is not None and bill.final:
            withdrawals.transfer_finished(w.out_bill_no, bill.state,
                                          transfer_failure(bill.fail_reason) if bill.state == "FAIL" else "")
            finished += 1
    return finished


@job
def request_payment_refund(out_refund_no: str) -> None:
    """Give back a payment the order cannot keep (a second payment, or one
    after cancellation without stock) through the gateway that took it —
    which need not be the order's own channel."""
    from handlers import payments
    from models import Order, Payment, RefundStatus, db

    from .gateways import gateway_for

    refund = payments.find_refund(out_refund_no)
    if refund is None or refund.status != RefundStatus.PENDING.value:
        return
    order = db.session.get(Order, refund.order_id)
    payment = db.session.get(Payment, refund.payment_id)
    gateway_for(payment.channel).refund(order, refund)


@job
def close_trades(order_no: str) -> None:
    """Close the order's trade at every configured gateway but the one that
    took its payment: a cancelled order, or the other channel of a paid
    one, can take no (further) payment. A trade that was paid meanwhile is
    asked about and handed to payments.mark_paid (a lost notification: it
    revives the order, or is refunded). Raises — the job is retried — when
    a gateway did not answer."""
    import logging

    from handlers import orders, payments
    from models import OrderStatus

    from .gateways import configured_channels, gateway_for

    order = orders.find_order(order_no)
    if order is None or order.status == OrderStatus.PENDING.value:
        return
    failed: list[str] = []
    for channel in configured_channels():
        if channel.value == order.pay_channel and order.status != OrderStatus.CANCELLED.value:
            continue  # the trade that paid the order
        gateway = gateway_for(channel)
        try:
            closed = gateway.close(order)
        except Exception as exc:  # noqa: BLE001 - try the other gateway, then retry this one
            logging.getLogger(__name__).warning("closing %s at %s failed: %s", order_no, channel.value, exc)
            failed.append(f"{channel.value}: {exc}")
            continue
        if not closed:
            trade = gateway.query(order)
            if trade is not None and trade.paid:
                payments.mark_paid(trade, kind="query")
    if failed:
        raise RuntimeError(f"could not close {order_no} at " + "; ".join(failed))
