"""Reconciliation: each day's WeChat Pay and Alipay bills against the payments, refunds and
transfers recorded here; every difference listed and resolved with a note.

A day is a China day. Each configured gateway's bill for it is downloaded
(pay/bills.py) and compared row by row:
- a trade is keyed by out_trade_no (our order number), a refund by
  out_refund_no (Alipay's out_request_no); a payment is on the day it was
  paid, a refund on the day it was asked for;
- at the gateway but not here (``gateway_only``): no order, or no refund,
  by that number; an order we have but not as paid is a ``state``
  difference (a notification we never took);
- here but not at the gateway (``local_only``): a payment of the day, or a
  refund of the day not failed, that the bill does not list;
- ``amount`` and ``state`` when both have it and they differ.
Transfers (WeChat Pay merchant transfers of withdrawals) are not in the
trade bill: each withdrawal whose transfer bill was created that day is
asked for with the transfer query API.

Rerunning a day is idempotent: the day's row is locked, a difference found
again is the same row (unique key), an unresolved one no longer found goes
away, a resolved one stays resolved with its note.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from flask import current_app
from sqlalchemy import select

from models import (Order, Payment, ReconcileDay, ReconcileDifference, Refund, Withdrawal, db)
from models.base import insert_ignoring_conflict
from pay import bills

from . import audit
from .clock import CHINA, now
from .errors import Conflict, DomainError, NotFound

log = logging.getLogger(__name__)

CHANNELS = {"wechatpay": "微信支付", "alipay": "支付宝"}
KIND_NAMES = {"trade": "支付", "refund": "退款", "transfer": "转账"}
PROBLEM_NAMES = {"gateway_only": "支付平台有、本系统没有", "local_only": "本系统有、支付平台没有",
                 "amount": "金额不一致", "state": "状态不一致"}
# Our refund states in the gateways' words.
REFUND_STATES = {"pending": "PROCESSING", "abnormal": "ABNORMAL", "succeeded": "SUCCESS", "failed": "CLOSED"}
# Our withdrawal states against a transfer bill's: paid is SUCCESS, failed is FAIL or CANCELLED.
TRANSFER_MATCH = {"paid": {"SUCCESS"}, "failed": {"FAIL", "CANCELLED"},
                  "transferring": {"ACCEPTED", "PROCESSING", "WAIT_USER_CONFIRM", "TRANSFERING", "CANCELING"}}
HISTORY_DAYS = 31
MAX_NOTE = 500


# -- days -------------------------------------------------------------------------------------

def today() -> date:
    return now().astimezone(CHINA).date()


def parse_day(value: Any) -> date:
    """A China day from "YYYY-MM-DD"; not after today."""
    text = str(value if value is not None else "").strip()
    try:
        day = date.fromisoformat(text) if len(text) == 10 and text.isascii() else None
    except ValueError:
        day = None
    if day is None:
        raise DomainError("日期格式应为 YYYY-MM-DD，例如 2026-11-30")
    if day > today():
        raise DomainError(f"不能对未来的日期对账（今天是 {today().isoformat()}）")
    return day


def bounds(day: date) -> tuple[datetime, datetime]:
    """The China day as UTC instants [start, end)."""
    start = datetime.combine(day, time(), CHINA).astimezone(timezone.utc)
    return start, start + timedelta(days=1)


def configured_channels() -> list[str]:
    settings = current_app.config["SETTINGS"]
    return [c for c, on in (("wechatpay", bills.wechatpay_configured(settings)),
                            ("alipay", bills.alipay_configured(settings))) if on]


# -- what we recorded -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    ref: str
    amount_fen: int
    state: str
    gateway_id: str = ""


def local_trades(channel: str, day: date) -> dict[str, Item]:
    start, end = bounds(day)
    rows = db.session.execute(select(Order.order_no, Payment.amount_fen, Payment.transaction_id)
                              .join(Order, Order.id == Payment.order_id)
                              .where(Payment.channel == channel, Payment.paid_at >= start, Payment.paid_at < end))
    return {no: Item(no, fen, "SUCCESS", txn) for no, fen, txn in rows}


def local_refunds(channel: str, day: date) -> dict[str, Item]:
    start, end = bounds(day)
    rows = db.session.execute(select(Refund.out_refund_no, Refund.amount_fen, Refund.status, Refund.gateway_refund_id)
                              .join(Payment, Payment.id == Refund.payment_id)
                              .where(Payment.channel == channel, Refund.created_at >= start,
                                     Refund.created_at < end))
    return {no: Item(no, fen, REFUND_STATES.get(status, status), gid or "") for no, fen, status, gid in rows}


def _trade_anywhere(channel: str, order_no: str) -> tuple[Item | None, str]:
    """Our payment of that order on this channel, on any day; else the order's state ("" when no such order)."""
    order = db.session.scalar(select(Order).where(Order.order_no == order_no))
    if order is None:
        return None, ""
    payment = db.session.scalar(select(Payment).where(Payment.order_id == order.id, Payment.channel == channel)
                                .order_by(Payment.id))
    if payment is None:
        return None, order.status
    return Item(order_no, payment.amount_fen, "SUCCESS", payment.transaction_id), order.status


def _refund_anywhere(out_refund_no: str) -> Item | None:
    refund = db.session.scalar(select(Refund).where(Refund.out_refund_no == out_refund_no))
    if refund is None:
        return None
    return Item(out_refund_no, refund.amount_fen, REFUND_STATES.get(refund.status, refund.status),
                refund.gateway_refund_id or "")


# -- comparing -----------------------------------------------------------------------------------

@dataclass
class Found:
    kind: str
    ref: str
    problem: str
    gateway_fen: int | None = None
    local_fen: int | None = None
    gateway_state: str = ""
    local_state: str = ""
    gateway_id: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return self.kind, self.ref, self.problem


@dataclass
class Comparison:
    found: list[Found] = field(default_factory=list)
    gateway_rows: int = 0
    local_rows: int = 0


def _both(kind: str, row: bills.BillRow, mine: Item, out: list[Found]) -> None:
    common = dict(gateway_fen=row.amount_fen, local_fen=mine.amount_fen, gateway_state=row.state,
                  local_state=mine.state, gateway_id=row.gateway_id)
    if row.amount_fen != mine.amount_fen:
        out.append(Found(kind, row.ref, "amount", **common))
    if row.state != mine.state:
        out.append(Found(kind, row.ref, "state", **common))


def compare(channel: str, day: date, rows: list[bills.BillRow]) -> Comparison:
    trades, refunds = local_trades(channel, day), local_refunds(channel, day)
    result = Comparison(gateway_rows=len(rows), local_rows=len(trades) + len(refunds))
    out = result.found
    seen_trades, seen_refunds = set(), set()
    for row in rows:
        if row.kind == "trade":
            seen_trades.add(row.ref)
            mine = trades.get(row.ref)
            order_state = ""
            if mine is None:
                mine, order_state = _trade_anywhere(channel, row.ref)
            if mine is not None:
                _both("trade", row, mine, out)
            elif order_state:  # our order, never paid here: a notification we did not take
                out.append(Found("trade", row.ref, "state", gateway_fen=row.amount_fen, gateway_state=row.state,
                                 local_state=f"order:{order_state}", gateway_id=row.gateway_id))
            else:
                out.append(Found("trade", row.ref, "gateway_only", gateway_fen=row.amount_fen,
                                 gateway_state=row.state, gateway_id=row.gateway_id))
        else:
            seen_refunds.add(row.ref)
            mine = refunds.get(row.ref) or _refund_anywhere(row.ref)
            if mine is not None:
                _both("refund", row, mine, out)
            else:
                out.append(Found("refund", row.ref, "gateway_only", gateway_fen=row.amount_fen,
                                 gateway_state=row.state, gateway_id=row.gateway_id))
    for ref, mine in trades.items():
        if ref not in seen_trades:
            out.append(Found("trade", ref, "local_only", local_fen=mine.amount_fen, local_state=mine.state,
                             gateway_id=mine.gateway_id))
    for ref, mine in refunds.items():
        if ref not in seen_refunds and mine.state != "CLOSED":  # a failed refund moved no money
            out.append(Found("refund", ref, "local_only", local_fen=mine.amount_fen, local_state=mine.state,
                             gateway_id=mine.gateway_id))
    return result


def transfers_of(day: date) -> list[Withdrawal]:
    start, end = bounds(day)
    return list(db.session.scalars(select(Withdrawal).where(
        Withdrawal.out_bill_no.is_not(None), Withdrawal.transfer_created_at >= start,
        Withdrawal.transfer_created_at < end).order_by(Withdrawal.id)))


def compare_transfers(day: date) -> Comparison:
    """Each withdrawal's transfer bill of the day, asked for one by one."""
    result = Comparison()
    for w in transfers_of(day):
        result.local_rows += 1
        bill = bills.wechatpay_transfer(w.out_bill_no)
        if bill is None:
            if w.status != "failed":
                result.found.append(Found("transfer", w.out_bill_no, "local_only", local_fen=w.net_fen,
                                          local_state=w.status))
            continue
        result.gateway_rows += 1
        common = dict(gateway_fen=bill.amount_fen, local_fen=w.net_fen, gateway_state=bill.state,
                      local_state=w.status, gateway_id=bill.transfer_bill_no)
        if bill.amount_fen is not None and bill.amount_fen != w.net_fen:
            result.found.append(Found("transfer", w.out_bill_no, "amount", **common))
        if bill.state not in TRANSFER_MATCH.get(w.status, set()):
            result.found.append(Found("transfer", w.out_bill_no, "state", **common))
    return result


def fetch(channel: str, day: date) -> Comparison:
    """Download and compare; raises bills.BillError."""
    if channel == "wechatpay":
        result = compare(channel, day, bills.wechatpay_bill(day))
        transfers = compare_transfers(day)
        result.found += transfers.found
        result.gateway_rows += transfers.gateway_rows
        result.local_rows += transfers.local_rows
        return result
    return compare(channel, day, bills.alipay_bill(day))


# -- running a day ------------------------------------------------------------------------------------

def _locked_day(day: date, channel: str) -> ReconcileDay:
    db.session.execute(insert_ignoring_conflict(ReconcileDay, {
        "day": day, "channel": channel, "state": "clean", "message": "", "differences": 0, "gateway_rows": 0,
        "local_rows": 0, "runs": 0, "run_by": "", "ran_at": now()}, ["day", "channel"]))
    return db.session.scalars(select(ReconcileDay).where(ReconcileDay.day == day, ReconcileDay.channel == channel)
                              .with_for_update().execution_options(populate_existing=True)).one()


def reconcile(day: date, channel: str, *, actor: audit.Actor) -> ReconcileDay:
    """Reconcile one gateway's bill of ``day``. A bill that cannot be had
    marks the day failed with the gateway's words. Flushes; the caller commits."""
    if channel not in CHANNELS:
        raise DomainError("支付渠道只能是微信支付或支付宝")
    try:
        result, problem = fetch(channel, day), ""
    except bills.BillError as exc:
        log.warning("reconcile %s %s: %s", day, channel, exc)
        result, problem = None, exc.message
    row = _locked_day(day, channel)
    before = {"state": row.state, "differences": row.differences} if row.runs else None
    row.runs += 1
    row.run_by, row.ran_at = actor.name[:64], now()
    if result is None:
        row.state, row.message = "failed", problem[:500]
    else:
        _store(day, channel, result.found)
        row.state = "differences" if result.found else "clean"
        row.message, row.differences = "", len(result.found)
        row.gateway_rows, row.local_rows = result.gateway_rows, result.local_rows
    audit.record(actor, "reconcile.run", "reconcile_day", f"{day.isoformat()}/{channel}", before=before,
                 after={"state": row.state, "differences": row.differences, "message": row.message})
    db.session.flush()
    return row


def _store(day: date, channel: str, found: list[Found]) -> None:
    existing = {(d.kind, d.ref, d.problem): d for d in db.session.scalars(
        select(ReconcileDifference).where(ReconcileDifference.day == day, ReconcileDifference.channel == channel)
        .execution_options(populate_existing=True))}
    keys = set()
    for f in found:
        keys.add(f.key)
        d = existing.get(f.key)
        if d is None:
            d = ReconcileDifference(day=day, channel=channel, kind=f.kind, ref=f.ref[:64], problem=f.problem,
                                    found_at=now())
            db.session.add(d)
        elif d.resolved_at is not None:
            continue  # resolved stays resolved, as it was when resolved
        d.gateway_fen, d.local_fen = f.gateway_fen, f.local_fen
        d.gateway_state, d.local_state, d.gateway_id = f.gateway_state[:32], f.local_state[:32], f.gateway_id[:64]
    for key, d in existing.items():
        if key not in keys and d.resolved_at is None:
            db.session.delete(d)  # no longer differs


def run_day(value: Any, *, actor: audit.Actor, channels: list[str] | None = None) -> list[ReconcileDay]:
    """Reconcile every configured gateway for the day ("YYYY-MM-DD" or a date)."""
    day = value if isinstance(value, date) else parse_day(value)
    if day > today():
        raise DomainError("不能对未来的日期对账")
    chosen = channels or configured_channels()
    if not chosen:
        raise DomainError("没有开通微信支付或支付宝，无账单可对")
    return [reconcile(day, channel, actor=actor) for channel in chosen]


def nightly() -> list[str]:
    """The timetabled job (app/cron.py): reconcile yesterday, China time."""
    from . import outbox

    try:
        done = run_day(today() - timedelta(days=1), actor=audit.SYSTEM)
        said = [f"{r.day} {r.channel} {r.state} {r.differences}" for r in done]
        outbox.commit()
        return said
    finally:
        db.session.rollback()  # the worker's session serves the next job too


# -- resolving ------------------------------------------------------------------------------------------

def resolve(difference_id: int, note: Any, *, actor: audit.Actor) -> ReconcileDifference:
    text = " ".join(str(note if note is not None else "").split())
    if not text:
        raise DomainError("请填写处理说明")
    if len(text) > MAX_NOTE:
        raise DomainError(f"处理说明不能超过 {MAX_NOTE} 个字")
    d = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.id == difference_id)
                           .with_for_update().execution_options(populate_existing=True)).one_or_none()
    if d is None:
        raise NotFound("没有这条差异")
    if d.resolved_at is not None:
        raise Conflict(f"这条差异已由 {d.resolved_by} 处理：{d.note}")
    d.resolved_at, d.resolved_by, d.resolved_staff_id, d.note = now(), actor.name[:64], actor.staff_id, text
    audit.record(actor, "reconcile.resolve", "reconcile_difference", d.id, before={"resolved": False},
                 after={"resolved": True, "day": d.day.isoformat(), "channel": d.channel, "kind": d.kind,
                        "ref": d.ref, "problem": d.problem}, reason=text)
    return d


# -- reading ------------------------------------------------------------------------------------------

@dataclass
class DayView:
    day: date
    runs: dict[str, ReconcileDay]
    open_count: int = 0

    @property
    def ran(self) -> bool:
        return bool(self.runs)


def overview(days: int = HISTORY_DAYS) -> list[DayView]:
    """The last ``days`` China days, newest first, with each gateway's last run."""
    last = today()
    first = last - timedelta(days=days - 1)
    views = {first + timedelta(days=i): DayView(first + timedelta(days=i), {}) for i in range(days)}
    for r in db.session.scalars(select(ReconcileDay).where(ReconcileDay.day >= first, ReconcileDay.day <= last)):
        views[r.day].runs[r.channel] = r
    for d in db.session.scalars(select(ReconcileDifference).where(
            ReconcileDifference.day >= first, ReconcileDifference.day <= last,
            ReconcileDifference.resolved_at.is_(None))):
        views[d.day].open_count += 1
    return sorted(views.values(), key=lambda v: v.day, reverse=True)


def day_detail(day: date) -> tuple[dict[str, ReconcileDay], list[ReconcileDifference]]:
    runs = {r.channel: r for r in db.session.scalars(select(ReconcileDay).where(ReconcileDay.day == day))}
    diffs = list(db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.day == day)
                                    .order_by(ReconcileDifference.resolved_at.is_not(None),
                                              ReconcileDifference.channel, ReconcileDifference.kind,
                                              ReconcileDifference.id)))
    return runs, diffs
