"""Payments and refunds, whatever the gateway.

The transports in ``pay/`` prove a notification genuine (signature, app and
merchant ids) and translate it into ``GatewayTrade``; everything after that
is decided here, once for both gateways: the order must exist, the amount
must match to the fen, and a payment is recorded exactly once (a unique
gateway transaction id inserted in the transaction that marks the order
paid). Outbound gateway calls go through the ``Gateway`` interface the
caller passes in.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import (NoticeVerdict, Order, OrderStatus, PayChannel, Payment, PaymentNotice, Refund, RefundStatus,
                    db)

from . import commissions, orders, outbox
from .clock import now
from .errors import Conflict, DomainError, NotFound

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


def mark_paid(trade: GatewayTrade, body: str = "", kind: str = "pay", at: datetime | None = None) -> Outcome:
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
    existing = db.session.scalars(select(Payment).where(Payment.order_id == order.id)).one_or_none()
    if existing is not None:
        if (existing.channel, existing.transaction_id) == (trade.channel.value, trade.transaction_id):
            record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE, "", body)
            return Outcome(NoticeVerdict.DUPLICATE, "already paid", order)
        # Paid twice (two channels, or two transactions): keep the second
        # visible for the merchant to refund; the order is paid once.
        log.error("order %s paid again by %s %s", order.order_no, trade.channel.value, trade.transaction_id)
        record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE, "second payment", body)
        return Outcome(NoticeVerdict.DUPLICATE, "second payment", order)
    if order.status == S.CANCELLED.value and not orders.revive_paid_late(order):
        log.error("order %s paid after cancellation and its stock is gone", order.order_no)
    try:
        with db.session.begin_nested():
            db.session.add(Payment(order_id=order.id, channel=trade.channel.value,
                                   transaction_id=trade.transaction_id, amount_fen=trade.amount_fen,
                                   payer=trade.payer, raw=trade.raw, paid_at=at))
    except IntegrityError:  # a racing twin (SQLite takes no row locks), or the id paid another order
        twin = db.session.scalars(select(Payment).where(Payment.channel == trade.channel.value,
                                                        Payment.transaction_id == trade.transaction_id)).first()
        if twin is not None and twin.order_id == order.id:
            record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.DUPLICATE, "", body)
            return Outcome(NoticeVerdict.DUPLICATE, "already paid", order)
        return reject(trade.channel, kind, trade.out_trade_no, "transaction id already used", body)
    if order.status in (S.PENDING.value, S.CANCELLED.value):
        orders.transition(order, S.PAID)
        order.paid_at, order.pay_channel, order.transaction_id = at, trade.channel.value, trade.transaction_id
        order.cancelled_at = order.cancel_reason = None
        commissions.post_for_order(order, at)
    record_notice(trade.channel, kind, trade.out_trade_no, NoticeVerdict.ACCEPTED, "", body)
    log.info("order %s paid by %s %s", order.order_no, trade.channel.value, trade.transaction_id)
    return Outcome(NoticeVerdict.ACCEPTED, "", order)


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


def start_refund(order_no: str, reason: str, at: datetime | None = None) -> Refund:
    reason = " ".join((reason or "").split())
    if not 1 <= len(reason) <= 80:
        raise DomainError("请写明退款原因（80 字以内）")
    order = orders.find_order(order_no, lock=True)
    if order is None:
        raise NotFound("订单不存在")
    previous = order.status
    orders.transition(order, S.REFUNDING)
    if not order.pay_channel:
        raise Conflict("订单没有付款记录")
    refund = Refund(order_id=order.id, out_refund_no=f"R{order.order_no}{secrets.randbelow(10**6):06d}",
                    amount_fen=order.total_fen, reason=reason, return_to=previous, created_at=at or now())
    db.session.add(refund)
    db.session.flush()
    outbox.after_commit("pay.jobs.request_refund", refund.out_refund_no, job_id=f"refund-{refund.out_refund_no}")
    return refund


def find_refund(out_refund_no: str, lock: bool = False) -> Refund | None:
    query = select(Refund).where(Refund.out_refund_no == (out_refund_no or "")[:64])
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.scalars(query).one_or_none()


def finish_refund(channel: PayChannel, out_refund_no: str, succeeded: bool, amount_fen: int,
                  gateway_refund_id: str = "", body: str = "", at: datetime | None = None) -> Outcome:
    """The gateway's word on a refund (notification or query). Idempotent."""
    at = at or now()
    refund = find_refund(out_refund_no, lock=True)
    if refund is None:
        return reject(channel, "refund", out_refund_no, "unknown refund", body)
    if amount_fen != refund.amount_fen:
        return reject(channel, "refund", out_refund_no, f"amount {amount_fen} fen, refund is {refund.amount_fen}",
                      body)
    if refund.status != RefundStatus.PENDING.value:
        record_notice(channel, "refund", out_refund_no, NoticeVerdict.DUPLICATE, "", body)
        return Outcome(NoticeVerdict.DUPLICATE)
    order = db.session.get(Order, refund.order_id)
    orders.find_order(order.order_no, lock=True)
    refund.finished_at, refund.gateway_refund_id = at, gateway_refund_id[:64] or None
    if succeeded:
        refund.status = RefundStatus.SUCCEEDED.value
        orders.transition(order, S.REFUNDED)
        order.refunded_at = at
        if refund.return_to == S.PAID.value:  # never shipped: the goods are still here
            orders.restore_stock(order)
        commissions.reverse_for_refund(order, at)
    else:
        refund.status = RefundStatus.FAILED.value
        orders.transition(order, S(refund.return_to))
    record_notice(channel, "refund", out_refund_no, NoticeVerdict.ACCEPTED, "" if succeeded else "failed", body)
    return Outcome(NoticeVerdict.ACCEPTED, "", order)


def notices(out_trade_no: str | None = None) -> list[PaymentNotice]:
    query = select(PaymentNotice).order_by(PaymentNotice.id)
    if out_trade_no:
        query = query.where(PaymentNotice.out_trade_no == out_trade_no)
    return list(db.session.scalars(query))
