"""One order's story for the staff (admin 订单详情): a timeline of typed
events in time order — created, paid (each payment, with its gateway ids),
shipped (and by whom), received (by the buyer or automatically),
cancelled or expired, each refund asked for and answered, commission posted,
settled, reversed or taken back — and the commission rows with their
beneficiaries. Read only; built from the rows the rest of the product
writes, and the audit log for who did it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from models import (AuditEntry, CommissionKind, CommissionRow, CommissionState, Distributor, Order, OrderStatus,
                    Payment, Refund, RefundOrigin, RefundStatus, Unit, User, db)

from . import commissions, payments
from .errors import NotFound
from .money import yuan
from .orders import find_order

CHANNELS = {"wechatpay": "微信支付", "alipay": "支付宝"}
REFUND_STATES = {RefundStatus.PENDING.value: ("处理中", "warning"), RefundStatus.ABNORMAL.value: ("异常", "danger"),
                 RefundStatus.SUCCEEDED.value: ("已退款", "success"), RefundStatus.FAILED.value: ("失败", "danger")}
REFUND_ORIGINS = {RefundOrigin.MERCHANT.value: "商家发起", RefundOrigin.AUTO.value: "自动退款",
                  RefundOrigin.GATEWAY.value: "支付平台后台"}
STATUS_TAGS = {OrderStatus.PENDING.value: "info", OrderStatus.PAID.value: "warning", OrderStatus.SHIPPED.value: "",
               OrderStatus.COMPLETED.value: "success", OrderStatus.CANCELLED.value: "info",
               OrderStatus.REFUNDING.value: "danger", OrderStatus.REFUNDED.value: "danger"}


@dataclass(frozen=True)
class Event:
    """One moment of the timeline: ``kind`` names it for pages and tests
    (created, paid, shipped, received, cancelled, expired, refund_requested,
    refunded, refund_failed, refund_abnormal, commission_posted,
    commission_settled, commission_reversed, commission_clawed_back)."""

    at: datetime
    kind: str
    title: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    tag: str = ""


@dataclass(frozen=True)
class CommissionView:
    """A commission row as the staff read it: who earns, how much, and what refunds took back."""

    row: CommissionRow
    beneficiary: str
    mobile: str
    line_name: str
    taken_back_fen: int

    @property
    def state_text(self) -> tuple[str, str]:
        if self.row.state == CommissionState.REVERSED.value:
            return "已冲销", "info"
        if self.taken_back_fen >= self.row.amount_fen:
            return "已扣回", "danger"
        suffix = "（部分扣回）" if self.taken_back_fen else ""
        if self.row.state == CommissionState.FROZEN.value:
            return "冻结中" + suffix, "warning"
        return "已结算" + suffix, "success"


@dataclass(frozen=True)
class OrderStory:
    order: Order
    unit: Unit
    distributor: Distributor | None
    parent: Distributor | None
    buyer: User | None
    payments: list[Payment]
    refunds: list[Refund]
    commissions: list[CommissionView]
    events: list[Event]
    refundable_fen: int
    refund_open: bool
    status_tag: str


def _who(entries: list[AuditEntry], action: str, match=lambda e: True) -> str:
    found = next((e for e in entries if e.action == action and match(e)), None)
    return found.actor if found is not None else ""


def story(order_no: str) -> OrderStory:
    order = find_order(order_no)
    if order is None:
        raise NotFound("订单不存在")
    unit = db.session.get(Unit, order.unit_id)
    distributor = db.session.get(Distributor, order.distributor_id) if order.distributor_id else None
    parent = db.session.get(Distributor, order.parent_distributor_id) if order.parent_distributor_id else None
    buyer = db.session.get(User, order.buyer_id) if order.buyer_id else None
    paid = list(db.session.scalars(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id)))
    refunds = payments.refunds_of(order.id)
    entries = list(db.session.scalars(select(AuditEntry).where(AuditEntry.target_type == "order",
                                                               AuditEntry.target_id == order.order_no)
                                      .order_by(AuditEntry.id)))
    rows = commissions.rows_of_order(order.id, None)
    names = {line.id: line.name for line in order.lines}
    people = {d.id: d for d in (distributor, parent) if d is not None}
    for row in rows:
        if row.distributor_id not in people:
            people[row.distributor_id] = db.session.get(Distributor, row.distributor_id)
    taken = commissions.taken_back(order.id)
    views = [CommissionView(r, people[r.distributor_id].real_name, people[r.distributor_id].mobile,
                            names.get(r.order_line_id, ""), taken.get((r.order_line_id, r.level), 0))
             for r in rows if r.kind == CommissionKind.COMMISSION.value]

    events: list[Event] = [Event(order.created_at, "created", "下单", [
        ("金额", "¥" + yuan(order.total_fen)), ("收货人", f"{order.receiver_name} {order.receiver_mobile}"),
        ("店铺", unit.name)])]
    for p in paid:
        title = "重复付款（自动退回）" if p.duplicate else "付款"
        events.append(Event(p.paid_at, "paid", title, [
            ("渠道", CHANNELS.get(p.channel, p.channel)), ("交易号", p.transaction_id),
            ("金额", "¥" + yuan(p.amount_fen))], "warning" if p.duplicate else "success"))
    if order.shipped_at:
        who = _who(entries, "order.ship")
        events.append(Event(order.shipped_at, "shipped", "发货", [
            ("快递公司", order.carrier or ""), ("运单号", order.tracking_no or "")] + ([("操作人", who)] if who else [])))
    if order.completed_at:
        automatic = order.auto_confirm_at is not None and order.completed_at >= order.auto_confirm_at
        events.append(Event(order.completed_at, "received", "确认收货",
                            [("方式", "超时自动确认" if automatic else "买家确认")], "success"))
    if order.cancelled_at and order.status == OrderStatus.CANCELLED.value:
        expired = order.cancel_reason == "超时未付款"
        events.append(Event(order.cancelled_at, "expired" if expired else "cancelled",
                            "超时关闭" if expired else "取消", [("原因", order.cancel_reason or "")], "info"))
    for r in refunds:
        who = _who(entries, "order.refund", lambda e, no=r.out_refund_no: (e.after or {}).get("out_refund_no") == no)
        facts = [("金额", "¥" + yuan(r.amount_fen) + ("（部分）" if r.partial else "")), ("原因", r.reason),
                 ("来源", REFUND_ORIGINS.get(r.origin, r.origin)), ("退款单号", r.out_refund_no)]
        if who:
            facts.append(("操作人", who))
        events.append(Event(r.created_at, "refund_requested", "申请退款", facts, "warning"))
        if r.status in (RefundStatus.SUCCEEDED.value, RefundStatus.FAILED.value, RefundStatus.ABNORMAL.value):
            text, tag = REFUND_STATES[r.status]
            kind = {RefundStatus.SUCCEEDED.value: "refunded", RefundStatus.FAILED.value: "refund_failed",
                    RefundStatus.ABNORMAL.value: "refund_abnormal"}[r.status]
            events.append(Event(r.finished_at or r.created_at, kind, f"退款{text}", [
                ("金额", "¥" + yuan(r.amount_fen)), ("状态", text),
                ("支付平台退款单号", r.gateway_refund_id or "—")], tag))
    for row in rows:
        who = people[row.distributor_id].real_name
        level = f"{row.level} 级"
        if row.kind == CommissionKind.COMMISSION.value:
            events.append(Event(row.created_at, "commission_posted", "佣金入账（冻结）", [
                ("受益人", f"{who}（{level}）"), ("比例", f"{row.rate_bp / 100:g}%"),
                ("金额", "¥" + yuan(row.amount_fen))]))
            if row.settled_at:
                events.append(Event(row.settled_at, "commission_settled", "佣金结算（可提现）", [
                    ("受益人", f"{who}（{level}）"), ("金额", "¥" + yuan(row.amount_fen))], "success"))
            if row.reversed_at:
                events.append(Event(row.reversed_at, "commission_reversed", "佣金冲销", [
                    ("受益人", f"{who}（{level}）"), ("金额", "¥" + yuan(row.amount_fen))], "info"))
        else:  # one row per line and level, grown by each refund: the total taken back
            events.append(Event(row.created_at, "commission_clawed_back", "佣金因退款扣回", [
                ("受益人", f"{who}（{level}）"), ("扣回合计", "¥" + yuan(-row.amount_fen))], "danger"))
    # Stable: events at the same moment keep the order they were added in (paid before its commission).
    events.sort(key=lambda e: e.at)
    open_refund = any(r.status in payments.OPEN for r in refunds)
    return OrderStory(order=order, unit=unit, distributor=distributor, parent=parent, buyer=buyer, payments=paid,
                      refunds=refunds, commissions=views, events=events,
                      refundable_fen=payments.refundable_fen(order)
                      if order.status in (OrderStatus.PAID.value, OrderStatus.SHIPPED.value,
                                          OrderStatus.COMPLETED.value) else 0,
                      refund_open=open_refund, status_tag=STATUS_TAGS.get(order.status, ""))
