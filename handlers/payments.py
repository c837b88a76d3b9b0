"""Payments and refunds, whatever the gateway.

The transports in ``pay/`` prove a notification genuine (signature, app and
merchant ids) and translate it into ``GatewayTrade``; everything after that
is decided here, once for both gateways: the order must exist, the amount
must match to the fen, and a payment is recorded exactly once (a unique
gateway transaction id inserted in the transaction that marks the order
paid). Outbound gateway calls go through the ``Gateway`` interface the
caller passes in.

No money is kept that the order cannot keep (issue 9, item 5):
- an order keeps one payment; a second one (the other channel, another
  transaction) is a ``duplicate`` row refunded by an automatic refund of its
  own, and once an order is paid the other channel's trade is closed;
- a payment for a cancelled order revives it only if its stock can be had
  again; otherwise it is refunded automatically and the order stays
  cancelled (``Order.holds_stock`` says whether stock is to be given back);
- REFUND.ABNORMAL leaves the refund open (``abnormal``) and tells the
  merchant; a later success or failure finishes it;
- a refund made at the gateway (WeChat Pay's console, Alipay's) is recorded
  once; when the payment's refunds add up to all of it the order is refunded
  and its commission reversed or clawed back; a partial one is only
  recorded and listed (``flask --app wsgi refunds list``): which goods and
  how much commission it covers is the merchant's call, not a guess of ours.
"""
from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import (NoticeVerdict, Order, OrderStatus, PayChannel, Payment, PaymentNotice, Refund, RefundOrigin,
                    RefundStatus, db)

from . import audit, commissions, leaderboard, notifications, orders, outbox
from .clock import now
from .errors import Conflict, DomainError, NotFound
from .money import yuan

log = logging.getLogger(__name__)
S = OrderStatus


@dataclass(frozen=True)
class GatewayTrade:
    """What a gateway says happened to one order (notification or query)."""

    channel: PayChannel
    out_trade_no: str
    paid: bool
    transaction_id: str = ""
    amount_fen: int = 0
    payer: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    verdict: NoticeVerdict
    reason: str = ""
    order: Order | None = None

    @property
    def ok(self) -> bool:
        return self.verdict is not NoticeVerdict.REJECTED


class Gateway(Protocol):
    channel: PayChannel

    def query(self, order: Order) -> GatewayTrade | None:
        """The gateway's view of the order, or None when it knows nothing yet."""

    def refund(self, order: Order, refund: Refund) -> None:
        """Ask for the refund; the result arrives by notification (or raise to retry)."""


def record_notice(channel: PayChannel, kind: str, out_trade_no: str | None, verdict: NoticeVerdict,
                  reason: str = "", body: str = "") -> None:
    """Every notification is kept as received, even one we refuse; in its own
    savepoint so that refusing the payment does not lose the record."""
    def clean(text: str | None, limit: int) -> str:
        return (text or "").replace("\x00", "\ufffd")[:limit]  # PostgreSQL text holds no NUL

    db.session.add(PaymentNotice(channel=channel.value, kind=kind, out_trade_no=clean(out_trade_no, 64) or None,
                                 verdict=verdict.value, reason=clean(reason, 200), body=clean(body, 20000)))
    db.session.flush()


def reject(channel: PayChannel, kind: str, out_trade_no: str | None, reason: str, body: str = "") -> Outcome:
    log.warning("%s %s notification refused (%s): %s", channel.value, kind, out_trade_no, reason)
    record_notice(channel, kind, out_trade_no, NoticeVerdict.REJECTED, reason, body)
    return Outcome(NoticeVerdict.REJECTED, reason)


def kept_payment(order_id: int, lock: bool = False) -> Payment | None:
    """The payment the order keeps (not a duplicate)."""
    query = select(Payment).where(Payment.order_id == order_id, Payment.duplicate.is_(False))
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalars(query).one_or_none()


def payment_by_transaction(channel: PayChannel, transaction_id: str) -> Payment | None:
    return db.session.scalars(select(Payment).where(Payment.channel == channel.value,
                                                    Payment.transaction_id == transaction_id)).first()


def mark_paid(trade: GatewayTrade, body: str = "", kind: str = "pay", at: datetime | None = None) -> Outcome:
    """A gateway says the order was paid. The first payment is kept and pays
    the order; any other (the other channel, another transaction) is
    recorded as a duplicate and refunded automatically. A payment for an
    order that was cancelled is kept only if the order can have its stock
    again; otherwise it is refunded and the order stays cancelled."""
    at = at or now()
    if not trade.paid:
        record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.ACCEPTED, "not paid", body)
        return Outcome(NoticeVerdict.ACCEPTED, "not paid")
    order = orders.find_order(trade.out_trade_no, lock=True)
    if order is None:
        return reject(trade.channel, kind, trade.out_trade_no, "unknown order", body)
    if trade.amount_fen != order.total_fen:
        return reject(trade.channel, kind, trade.out_trade_no,
                      f"amount {trade.amount_fen} fen, order is {order.total_fen} fen", body)
    if not trade.transaction_id:
        return reject(trade.channel, kind, trade.out_trade_no, "no transaction id", body)
    known = payment_by_transaction(trade.channel, trade.transaction_id)
    if known is not None:
        if known.order_id != order.id:
            return reject(trade.channel, kind, trade.out_trade_no, "transaction id already used", body)
        record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE,
                      "second payment" if known.duplicate else "", body)
        return Outcome(NoticeVerdict.DUPLICATE, "second payment" if known.duplicate else "already paid", order)
    if kept_payment(order.id) is not None:
        return _second_payment(order, trade, body, kind, at)
    payment = Payment(order_id=order.id, channel=trade.channel.value, transaction_id=trade.transaction_id,
                      amount_fen=trade.amount_fen, payer=trade.payer, raw=trade.raw, paid_at=at)
    try:
        with db.session.begin_nested():  # the stock taken back goes too if the payment cannot be kept
            revived = order.status != S.CANCELLED.value or orders.revive_paid_late(order)
            db.session.add(payment)
            db.session.flush()
    except IntegrityError:  # a racing twin (SQLite takes no row locks), or another payment kept meanwhile
        twin = payment_by_transaction(trade.channel, trade.transaction_id)
        if twin is not None and twin.order_id == order.id:
            record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE, "", body)
            return Outcome(NoticeVerdict.DUPLICATE, "already paid", order)
        if twin is not None:
            return reject(trade.channel, kind, trade.out_trade_no, "transaction id already used", body)
        return _second_payment(order, trade, body, kind, at)
    leaderboard.payment_recorded(payment.id)
    if not revived:
        # Paid after cancellation and the stock is gone: the buyer gets the
        # money back; the order stays cancelled and never ships.
        _auto_refund(order, payment, "订单已取消且库存不足，自动退款", at)
        log.error("order %s paid by %s %s after its cancellation; its stock is gone: refunded automatically",
                  order.order_no, trade.channel.value, trade.transaction_id)
        record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.ACCEPTED,
                      "paid after cancellation, refunded", body)
        return Outcome(NoticeVerdict.ACCEPTED, "paid after cancellation, refunded", order)
    if order.status in (S.PENDING.value, S.CANCELLED.value):
        orders.transition(order, S.PAID)
        order.paid_at, order.pay_channel, order.transaction_id = at, trade.channel.value, trade.transaction_id
        order.cancelled_at = order.cancel_reason = None
        commissions.post_for_order(order, at)
        notifications.order_paid(order, at)
        # The buyer may have started the other gateway too: close it, so it
        # cannot take a second payment.
        orders.close_gateway_trades(order)
    record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.ACCEPTED, "", body)
    log.info("order %s paid by %s %s", order.order_no, trade.channel.value, trade.transaction_id)
    return Outcome(NoticeVerdict.ACCEPTED, "", order)


def _second_payment(order: Order, trade: GatewayTrade, body: str, kind: str, at: datetime) -> Outcome:
    """The order is paid already: this payment is recorded as a duplicate
    and refunded by a refund of its own; the order does not move."""
    payment = Payment(order_id=order.id, duplicate=True, channel=trade.channel.value,
                      transaction_id=trade.transaction_id, amount_fen=trade.amount_fen, payer=trade.payer,
                      raw=trade.raw, paid_at=at)
    try:
        with db.session.begin_nested():
            db.session.add(payment)
    except IntegrityError:  # the same transaction, racing
        record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE, "second payment", body)
        return Outcome(NoticeVerdict.DUPLICATE, "second payment", order)
    refund = _auto_refund(order, payment, "重复付款，自动退款", at)
    log.error("order %s paid a second time by %s %s: refund %s started automatically", order.order_no,
              trade.channel.value, trade.transaction_id, refund.out_refund_no)
    record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE, "second payment, refunded",
                  body)
    return Outcome(NoticeVerdict.DUPLICATE, "second payment", order)


def _refund_no(order: Order) -> str:
    return f"R{order.order_no}{secrets.randbelow(10**6):06d}"


def _auto_refund(order: Order, payment: Payment, reason: str, at: datetime) -> Refund:
    """Give back a payment the order cannot keep, through its own gateway."""
    refund = Refund(order_id=order.id, payment_id=payment.id, origin=RefundOrigin.AUTO.value,
                    out_refund_no=_refund_no(order), amount_fen=payment.amount_fen, reason=reason, return_to=None,
                    created_at=at)
    db.session.add(refund)
    db.session.flush()
    outbox.after_commit("pay.jobs.request_payment_refund", refund.out_refund_no,
                        job_id=f"refund-{refund.out_refund_no}")
    return refund


def sync_with_gateway(order_no: str, gateway: Gateway) -> Order:
    """The buyer is back from paying: ask the gateway instead of trusting the
    browser. Only a pending order is asked about."""
    order = orders.find_order(order_no)
    if order is None:
        raise NotFound("订单不存在")
    if order.status == S.PENDING.value:
        trade = gateway.query(order)
        if trade is not None and trade.paid:
            mark_paid(trade, kind="query")
            db.session.refresh(order)
    return order


REFUND_KEY = re.compile(r"^[A-Za-z0-9_-]{8,24}$")
MAX_REFUND_REASON = 80
OPEN = (RefundStatus.PENDING.value, RefundStatus.ABNORMAL.value)


def refunds_of(order_id: int) -> list[Refund]:
    """Every refund of the order, oldest first (the buyer's and the staff's pages)."""
    return list(db.session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)))


def refundable_fen(order: Order) -> int:
    """What can still be refunded of the order's payment: its amount less the
    refunds that went through or are on their way."""
    payment = kept_payment(order.id)
    if payment is None:
        return 0
    held = sum(r.amount_fen for r in refunds_of(order.id)
               if r.payment_id == payment.id and r.status != RefundStatus.FAILED.value)
    return payment.amount_fen - held


def new_refund_key() -> str:
    """The refund form's one-time key (``start_refund``'s ``request_key``)."""
    return secrets.token_urlsafe(12)


def start_refund(order_no: str, reason: str, *, actor: audit.Actor, amount_fen: int | None = None,
                 request_key: str | None = None, at: datetime | None = None) -> Refund:
    """Give the buyer ``amount_fen`` (default: all that is left) back through
    the order's gateway. Refunds may follow one another until the payment is
    all refunded; the one that refunds what is left moves the order to
    REFUNDING (and, on success, REFUNDED), a smaller one leaves the order
    where it is and, on success, takes commission back in proportion
    (handlers.commissions). One refund at a time: a new one waits until the
    gateway has answered the last. ``request_key`` (the form's one-time key)
    is part of the refund number, so the same form sent twice is one refund."""
    reason = " ".join((reason or "").split())
    if not 1 <= len(reason) <= MAX_REFUND_REASON:
        raise DomainError(f"请写明退款原因（{MAX_REFUND_REASON} 字以内）")
    if request_key is not None and not REFUND_KEY.match(request_key):
        raise DomainError("页面已过期，请刷新后再提交")
    if amount_fen is not None and amount_fen <= 0:
        raise DomainError("退款金额必须大于 0")
    order = orders.find_order(order_no, lock=True)
    if order is None:
        raise NotFound("订单不存在")
    if request_key is not None:
        earlier = find_refund(f"R{order.order_no}{request_key}")
        if earlier is not None:
            return earlier  # the same form sent again: that refund, nothing new
    if order.status in (S.PENDING.value, S.CANCELLED.value):
        raise Conflict("订单未付款，没有可退的钱")
    if order.status == S.REFUNDING.value:
        raise Conflict("订单正在全额退款中")
    if order.status == S.REFUNDED.value:
        raise Conflict("订单已全额退款")
    payment = kept_payment(order.id, lock=True)
    if not order.pay_channel or payment is None:
        raise Conflict("订单没有付款记录")
    mine = [r for r in db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)
                                          .with_for_update().execution_options(populate_existing=True))]
    if any(r.status in OPEN for r in mine):
        raise Conflict("上一笔退款还在处理中，请等支付平台答复后再退")
    left = payment.amount_fen - sum(r.amount_fen for r in mine if r.status == RefundStatus.SUCCEEDED.value)
    amount = left if amount_fen is None else amount_fen
    if left <= 0:
        raise Conflict("订单已全额退款")
    if amount > left:
        raise DomainError(f"退款金额超过可退金额 ¥{yuan(left)}")
    whole = amount == left
    previous = order.status
    if whole:
        orders.transition(order, S.REFUNDING)
    number = f"R{order.order_no}{request_key}" if request_key else _refund_no(order)
    refund = Refund(order_id=order.id, payment_id=payment.id, out_refund_no=number, partial=not whole,
                    amount_fen=amount, reason=reason, return_to=previous if whole else None, created_at=at or now())
    db.session.add(refund)
    db.session.flush()
    audit.record(actor, "order.refund", "order", order.order_no,
                 before={"status": previous, "refundable_fen": left},
                 after={"status": order.status, "out_refund_no": refund.out_refund_no, "amount_fen": amount,
                        "partial": not whole, "refundable_fen": left - amount},
                 reason=reason, at=at)
    outbox.after_commit("pay.jobs.request_refund", refund.out_refund_no, job_id=f"refund-{refund.out_refund_no}")
    return refund


def find_refund(out_refund_no: str, lock: bool = False) -> Refund | None:
    query = select(Refund).where(Refund.out_refund_no == (out_refund_no or "")[:64])
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalars(query).one_or_none()


def finish_refund(channel: PayChannel, out_refund_no: str, succeeded: bool, amount_fen: int,
                  gateway_refund_id: str = "", body: str = "", at: datetime | None = None,
                  abnormal: bool = False) -> Outcome:
    """The gateway's word on a refund we asked for (notification or answer).
    Idempotent. ``abnormal`` (WeChat Pay's REFUND.ABNORMAL: the money could
    not reach the buyer) keeps the refund open and tells the merchant; a
    later success or failure finishes it."""
    at = at or now()
    refund = find_refund(out_refund_no, lock=True)
    if refund is None:
        return reject(channel, "refund", out_refund_no, "unknown refund", body)
    if amount_fen != refund.amount_fen:
        return reject(channel, "refund", out_refund_no, f"amount {amount_fen} fen, refund is {refund.amount_fen}",
                      body)
    if refund.status in (RefundStatus.SUCCEEDED.value, RefundStatus.FAILED.value) or \
            (abnormal and refund.status == RefundStatus.ABNORMAL.value):
        record_notice(channel, "refund", out_refund_no, NoticeVerdict.DUPLICATE, "", body)
        return Outcome(NoticeVerdict.DUPLICATE)
    order = db.session.get(Order, refund.order_id)
    orders.find_order(order.order_no, lock=True)
    refund.gateway_refund_id = gateway_refund_id[:64] or refund.gateway_refund_id
    if abnormal:
        refund.status = RefundStatus.ABNORMAL.value
        log.error("refund %s of order %s (%s fen) is ABNORMAL at %s: the money did not reach the buyer; "
                  "handle it in the gateway's merchant console (flask --app wsgi refunds list)",
                  out_refund_no, order.order_no, refund.amount_fen, channel.value)
        record_notice(channel, "refund", out_refund_no, NoticeVerdict.ACCEPTED, "abnormal", body)
        return Outcome(NoticeVerdict.ACCEPTED, "abnormal", order)
    refund.finished_at = at
    if succeeded:
        refund.status = RefundStatus.SUCCEEDED.value
        _refund_landed(order, refund)
        if refund.return_to is not None:
            _refunded(order, refund.return_to, at, refund.id)
        elif refund.partial:
            _partly_refunded(order, refund, at)
        notifications.order_refunded(order, refund.id, refund.amount_fen, refund.reason,
                                     whole=refund.return_to is not None, at=at, partial=refund.partial)
    else:
        refund.status = RefundStatus.FAILED.value
        if refund.return_to is not None:
            orders.transition(order, S(refund.return_to))
        else:
            log.error("automatic refund %s of order %s (%s fen) failed at %s: the money is still with the "
                      "merchant; refund it by hand (flask --app wsgi refunds list)", out_refund_no, order.order_no,
                      refund.amount_fen, channel.value)
    record_notice(channel, "refund", out_refund_no, NoticeVerdict.ACCEPTED, "" if succeeded else "failed", body)
    return Outcome(NoticeVerdict.ACCEPTED, "", order)


def _refund_landed(order: Order, refund: Refund, payment: Payment | None = None) -> None:
    """A refund succeeded (the order is locked): the leaderboard hears of it,
    and the order's ``refunded_fen`` grows when the money was the sale's, not
    one the order never kept (an automatic refund, a duplicate payment)."""
    leaderboard.refund_landed(refund.id)
    if refund.origin == RefundOrigin.AUTO.value:
        return
    payment = payment or (db.session.get(Payment, refund.payment_id) if refund.payment_id else None)
    if payment is not None and payment.duplicate:
        return
    order.refunded_fen = Order.refunded_fen + refund.amount_fen  # one UPDATE, whatever this session read


def _refunded(order: Order, was: str, at: datetime, refund_id: int | None = None) -> None:
    """The order's money is back with the buyer: refunded, its unshipped
    stock returned, its commission reversed or clawed back."""
    if order.status != S.REFUNDING.value:
        orders.transition(order, S.REFUNDING)
    orders.transition(order, S.REFUNDED)
    order.refunded_at = at
    if was == S.PAID.value:  # never shipped: the goods are still here
        orders.restore_stock(order)
    commissions.reverse_for_refund(order, at, refund_id)


def _partly_refunded(order: Order, refund: Refund, at: datetime) -> None:
    """A partial refund of ours went through: the order stays where it is;
    commission is taken back in proportion to all our refunds so far (a
    partial one made in a gateway's console is not ours to apportion)."""
    payment = db.session.get(Payment, refund.payment_id) if refund.payment_id else None
    if payment is None or payment.duplicate:
        return
    refunded = sum(r.amount_fen for r in refunds_of(order.id)
                   if r.payment_id == payment.id and r.status == RefundStatus.SUCCEEDED.value
                   and r.origin != RefundOrigin.GATEWAY.value)
    commissions.take_back(order, refunded, payment.amount_fen, refund_id=refund.id, at=at)


def refunded_before(refund: Refund) -> int:
    """What other refunds of the same payment gave back already (Alipay
    answers a refund with the trade's refunded total)."""
    return sum(r.amount_fen for r in db.session.scalars(select(Refund).where(
        Refund.payment_id == refund.payment_id, Refund.id != refund.id,
        Refund.status == RefundStatus.SUCCEEDED.value)))


def refund_notified(channel: PayChannel, out_refund_no: str, status: str, amount_fen: int, *,
                    out_trade_no: str = "", transaction_id: str = "", gateway_refund_id: str = "",
                    body: str = "") -> Outcome:
    """A gateway's word on a refund (SUCCESS, CLOSED or ABNORMAL). One we asked
    for is finished, or kept open while ABNORMAL; one we never made was started
    in the merchant's console at the gateway, and only its success changes
    anything here."""
    if find_refund(out_refund_no) is not None:
        return finish_refund(channel, out_refund_no, status == "SUCCESS", amount_fen,
                             gateway_refund_id=gateway_refund_id, body=body, abnormal=status == "ABNORMAL")
    if status != "SUCCESS":
        if status == "ABNORMAL":
            log.error("refund %s of order %s made at the gateway is ABNORMAL: the money did not reach the buyer",
                      out_refund_no, out_trade_no)
        record_notice(channel, "refund", out_refund_no, NoticeVerdict.ACCEPTED,
                      f"{status.lower()}, made at the gateway", body)
        return Outcome(NoticeVerdict.ACCEPTED, status)
    if not out_trade_no:
        return reject(channel, "refund", out_refund_no, "unknown refund and no out_trade_no", body)
    return refunded_at_gateway(channel, out_trade_no, transaction_id, amount_fen=amount_fen,
                               out_refund_no=out_refund_no, gateway_refund_id=gateway_refund_id, body=body)


def refunded_at_gateway(channel: PayChannel, out_trade_no: str, transaction_id: str, *,
                        amount_fen: int | None = None, refunded_total_fen: int | None = None,
                        out_refund_no: str = "", gateway_refund_id: str = "", body: str = "",
                        at: datetime | None = None) -> Outcome:
    """A refund made at the gateway, not asked for by us (WeChat Pay's
    merchant console, Alipay's): ``amount_fen`` is this refund, or
    ``refunded_total_fen`` the payment's refunded total so far (Alipay's
    ``refund_fee``). Recorded once (``out_refund_no``).

    When the payment's refunds add up to the whole of it, the order is
    refunded like any other (stock, commission reversed or clawed back). A
    partial refund is recorded and put before the merchant, nothing else:
    which lines, and how much commission, is the merchant's call, not ours."""
    at = at or now()
    order = orders.find_order(out_trade_no, lock=True)
    if order is None:
        return reject(channel, "refund", out_trade_no, "unknown order", body)
    payment = payment_by_transaction(channel, transaction_id) if transaction_id else None
    if payment is None or payment.order_id != order.id:
        return reject(channel, "refund", out_trade_no, f"no payment {transaction_id[:64]!r} for this order", body)
    refunds = list(db.session.scalars(select(Refund).where(Refund.payment_id == payment.id)
                                      .with_for_update().execution_options(populate_existing=True)))
    done = sum(r.amount_fen for r in refunds if r.status == RefundStatus.SUCCEEDED.value)
    if refunded_total_fen is not None:
        amount_fen = refunded_total_fen - done
        if amount_fen <= 0:  # nothing new: a retry, or a refund we know already
            record_notice(channel, "refund", out_trade_no, NoticeVerdict.DUPLICATE, "", body)
            return Outcome(NoticeVerdict.DUPLICATE, "", order)
    if amount_fen is None or amount_fen <= 0 or done + amount_fen > payment.amount_fen:
        return reject(channel, "refund", out_trade_no,
                      f"refund of {amount_fen} fen, {done} of {payment.amount_fen} refunded already", body)
    out_refund_no = (out_refund_no or f"G{payment.id}-{done + amount_fen}")[:64]
    if find_refund(out_refund_no) is not None:
        record_notice(channel, "refund", out_refund_no, NoticeVerdict.DUPLICATE, "", body)
        return Outcome(NoticeVerdict.DUPLICATE, "", order)
    whole = done + amount_fen == payment.amount_fen
    was: str | None = None
    if whole:
        # Ours, still open, is overtaken: the money went back at the gateway.
        for live in refunds:
            if live.status in (RefundStatus.PENDING.value, RefundStatus.ABNORMAL.value) and not live.partial:
                live.status, live.finished_at = RefundStatus.FAILED.value, at
                was = live.return_to or was
        db.session.flush()
        if not payment.duplicate and order.status in (S.PAID.value, S.SHIPPED.value, S.COMPLETED.value):
            was = order.status
    refund = Refund(order_id=order.id, payment_id=payment.id, origin=RefundOrigin.GATEWAY.value,
                    partial=not whole, out_refund_no=out_refund_no, amount_fen=amount_fen,
                    reason="在支付平台直接退款", status=RefundStatus.SUCCEEDED.value, return_to=was,
                    gateway_refund_id=gateway_refund_id[:64] or None, created_at=at, finished_at=at)
    try:
        with db.session.begin_nested():
            db.session.add(refund)
    except IntegrityError:  # the same refund, racing
        record_notice(channel, "refund", out_refund_no, NoticeVerdict.DUPLICATE, "", body)
        return Outcome(NoticeVerdict.DUPLICATE, "", order)
    _refund_landed(order, refund, payment)
    if not whole:
        log.error("order %s: %s fen of %s refunded at %s outside the shop (%s); partial, so the order and its "
                  "commission are unchanged: the merchant decides (flask --app wsgi refunds list)",
                  order.order_no, amount_fen, payment.amount_fen, channel.value, out_refund_no)
    elif was is not None:
        _refunded(order, was, at, refund.id)
        log.warning("order %s refunded at %s outside the shop (%s)", order.order_no, channel.value, out_refund_no)
    notifications.order_refunded(order, refund.id, amount_fen, refund.reason, whole=was is not None, at=at,
                                 partial=not whole)
    record_notice(channel, "refund", out_refund_no, NoticeVerdict.ACCEPTED,
                  "at the gateway" + ("" if whole else ", partial"), body)
    return Outcome(NoticeVerdict.ACCEPTED, "", order)


def refunds_to_watch(status: str | None = None, limit: int = 200) -> list[Refund]:
    """What the merchant must look at: refunds not finished well (pending,
    abnormal, failed automatic ones) and partial refunds made at the
    gateway (ours, from the admin or ``orders refund --amount-fen``, apply
    themselves); or every refund in ``status``."""
    query = select(Refund).order_by(Refund.id.desc()).limit(limit)
    if status:
        query = query.where(Refund.status == status)
    else:
        query = query.where(
            (Refund.status.in_([RefundStatus.PENDING.value, RefundStatus.ABNORMAL.value]))
            | ((Refund.status == RefundStatus.FAILED.value) & (Refund.origin == RefundOrigin.AUTO.value))
            | (Refund.partial.is_(True) & (Refund.origin == RefundOrigin.GATEWAY.value)))
    return list(db.session.scalars(query))


def notices(out_trade_no: str | None = None) -> list[PaymentNotice]:
    query = select(PaymentNotice).order_by(PaymentNotice.id)
    if out_trade_no:
        query = query.where(PaymentNotice.out_trade_no == out_trade_no)
    return list(db.session.scalars(query))
