"""The commission ledger (PRODUCT.md flow 8).

Rounding, written down once: a commission is the order line's amount times
the rate in basis points, divided by 10 000 and **rounded down to the fen**
(``amount_fen * rate_bp // 10000``), so the merchant never pays a fraction
nobody earned. Rates and the base amount are copied onto each row.

The cap, kept here too: the two levels of one line together never earn more
than ``[distribution] max_total_rate_bp`` of it (the configuration and the
catalogue refuse rates above it; a line from before the cap was lowered is
cut down when posted, level 1 first).

Life of a row: posted FROZEN when its order is paid; when the order is
completed, ``settle_at`` = completion + ``[distribution] freeze_days``, and
at that time (a delayed job, with an idempotent sweep behind it) it becomes
WITHDRAWABLE. A refund of the whole order before that REVERSES it; after
it, a negative CLAWBACK row takes it back, which may take the withdrawable
balance below zero and so blocks withdrawals until later income makes it
good.

Partial refunds, and the rounding of what they take back, written down
once (``kept_after_refund``): once ``refunded`` fen of a payment of ``paid``
fen went back to the buyer, a commission row keeps
``amount × (paid − refunded) ÷ paid`` **rounded down to the fen** — the
same rule as the commission itself, applied to what the buyer kept — and
the rest is taken back. It is computed on the refunded total each time, not
per refund, so several partial refunds take back exactly what one refund of
their sum would, and a refund of everything takes back everything. What is
taken back lives in the row's one CLAWBACK row (one per order line and
level), whose amount grows with each refund: FROZEN (settling together with
its commission, so the distributor's frozen sum is net) while the
commission is frozen, WITHDRAWABLE once it is. Only refunds we make (or a
whole refund made at the gateway) take commission back; a partial refund
made in a gateway's console is recorded and left to the merchant.

Balances change only here and in handlers.withdrawals, in the transaction
that changes the rows behind them, on a row locked with SELECT … FOR UPDATE.
Lock order everywhere: order, then balance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from models import (COMMISSION_STATES, Balance, CommissionKind, CommissionRow, CommissionState, Distributor,
                    DistributorStatus, Order, OrderLine, db)
from models.base import insert_ignoring_conflict

from . import notifications, outbox, settings
from .clock import CHINA, now
from .stats import china_day  # the China day of a stored instant, in SQL

log = logging.getLogger(__name__)
C = CommissionState


def commission_of(base_fen: int, rate_bp: int) -> int:
    """The one rounding rule: down to the fen."""
    return base_fen * rate_bp // 10000


def balance_for_update(distributor_id: int) -> Balance:
    """The distributor's balance row, created if missing, locked."""
    db.session.execute(insert_ignoring_conflict(Balance, {"distributor_id": distributor_id}, ["distributor_id"]))
    return db.session.scalars(select(Balance).where(Balance.distributor_id == distributor_id).with_for_update()
                              .execution_options(populate_existing=True)).one()


def balance_of(distributor_id: int) -> Balance:
    found = db.session.get(Balance, distributor_id)
    return found or Balance(distributor_id=distributor_id, frozen_fen=0, withdrawable_fen=0, reserved_fen=0,
                            withdrawn_fen=0, lifetime_fen=0)


def line_rates(line: OrderLine) -> tuple[int, int]:
    """The (level 1, level 2) rates a line pays: its own, else the default,
    together never above ``max_total_rate_bp`` (level 1 is served first)."""
    rules = settings.section("distribution")
    level1 = rules["level1_rate_bp"] if line.level1_rate_bp is None else line.level1_rate_bp
    level2 = rules["level2_rate_bp"] if line.level2_rate_bp is None else line.level2_rate_bp
    cap = rules["max_total_rate_bp"]
    if level1 + level2 > cap:
        log.warning("order line %s: rates %s + %s bp above the cap %s bp, cut down", line.id, level1, level2, cap)
        level1 = min(level1, cap)
        level2 = min(level2, cap - level1)
    return level1, level2


def post_for_order(order: Order, at: datetime | None = None) -> list[CommissionRow]:
    """Called in the transaction that marks ``order`` paid. Organic orders
    post nothing; a frozen distributor earns nothing."""
    at = at or now()
    if order.distributor_id is None:
        return []
    rates = {line.id: line_rates(line) for line in order.lines}
    earners = [(1, order.distributor_id)]
    if order.parent_distributor_id:
        earners.append((2, order.parent_distributor_id))
    posted = []
    for level, distributor_id in earners:
        # Read from the database, not the session: a freeze committed a moment ago counts.
        if db.session.scalar(select(Distributor.status).where(Distributor.id == distributor_id)) \
                != DistributorStatus.ACTIVE.value:
            continue
        rows = []
        for line in order.lines:
            rate = rates[line.id][level - 1]
            amount = commission_of(line.amount_fen, rate)
            if amount <= 0:
                continue
            row_id = db.session.scalars(insert_ignoring_conflict(CommissionRow, {
                "distributor_id": distributor_id, "order_id": order.id, "order_line_id": line.id,
                "level": level, "kind": CommissionKind.COMMISSION.value, "base_fen": line.amount_fen,
                "rate_bp": rate, "amount_fen": amount, "state": C.FROZEN.value, "created_at": at,
            }, ["order_line_id", "level", "kind"]).returning(CommissionRow.id)).one_or_none()
            if row_id is not None:  # None: posted before (a retried payment)
                rows.append(db.session.get(CommissionRow, row_id))
        if rows:
            balance_for_update(distributor_id).frozen_fen += sum(r.amount_fen for r in rows)
            posted += rows
    notifications.new_order(order, sum(r.amount_fen for r in posted if r.level == 1))
    return posted


def rows_of_order(order_id: int, kind: CommissionKind | None = CommissionKind.COMMISSION) -> list[CommissionRow]:
    """The order's rows of ``kind`` (every kind with None), oldest first."""
    query = select(CommissionRow).where(CommissionRow.order_id == order_id)
    if kind is not None:
        query = query.where(CommissionRow.kind == kind.value)
    return list(db.session.scalars(query.order_by(CommissionRow.id)))


def start_freeze_window(order: Order) -> None:
    """The order is completed: its commission (net of what partial refunds
    took back while frozen) settles after freeze_days."""
    settle_at = order.completed_at + timedelta(days=settings.section("distribution")["freeze_days"])
    rows = [r for r in rows_of_order(order.id, None) if r.state == C.FROZEN.value]
    for row in rows:
        row.settle_at = settle_at
    if rows:
        outbox.after_commit_at(settle_at, "pay.jobs.settle_order", order.id, job_id=f"settle-{order.id}")


def settle_order(order_id: int, at: datetime | None = None) -> int:
    """Frozen rows of this order whose time has come become withdrawable.
    Idempotent: settled rows are left alone."""
    at = at or now()
    db.session.scalars(select(Order).where(Order.id == order_id).with_for_update()).one_or_none()
    due = [r for r in rows_of_order(order_id, None)  # a frozen clawback settles with its commission
           if r.state == C.FROZEN.value and r.settle_at is not None and r.settle_at <= at]
    by_distributor: dict[int, int] = {}
    for row in due:
        row.state = COMMISSION_STATES.check(row.state, C.WITHDRAWABLE)
        row.settled_at = at
        by_distributor[row.distributor_id] = by_distributor.get(row.distributor_id, 0) + row.amount_fen
    for distributor_id, amount in sorted(by_distributor.items()):
        balance = balance_for_update(distributor_id)
        balance.frozen_fen -= amount
        balance.withdrawable_fen += amount
        balance.lifetime_fen += amount
        if amount > 0:
            notifications.commission_settled(distributor_id, order_id, amount)
    return len(due)


def sweep(at: datetime | None = None) -> int:
    """Settle every due row (the safety net behind the delayed jobs)."""
    at = at or now()
    order_ids = db.session.scalars(select(CommissionRow.order_id).where(
        CommissionRow.state == C.FROZEN.value, CommissionRow.settle_at <= at).distinct()).all()
    return sum(settle_order(order_id, at) for order_id in sorted(order_ids))


def kept_after_refund(amount_fen: int, paid_fen: int, refunded_fen: int) -> int:
    """The one rounding rule of partial refunds (module doc): what a
    commission keeps is its share of what the buyer kept, rounded down."""
    refunded_fen = min(max(refunded_fen, 0), paid_fen)
    return amount_fen * (paid_fen - refunded_fen) // paid_fen


def take_back(order: Order, refunded_fen: int, paid_fen: int, *, refund_id: int | None = None,
              at: datetime | None = None) -> dict[int, int]:
    """``refunded_fen`` of the order's ``paid_fen`` has gone back to the buyer
    (all refunds so far): take back from each commission row what it no
    longer keeps and has not given back yet. A refund of everything reverses
    frozen rows outright. Idempotent (computed on the total). Each
    distributor who loses commission is told, once per refund. Returns what
    was taken this time, per distributor. Caller holds the order's lock."""
    at = at or now()
    whole = refunded_fen >= paid_fen
    clawbacks = {(r.order_line_id, r.level): r for r in rows_of_order(order.id, CommissionKind.CLAWBACK)}
    changes: dict[int, list[int]] = {}  # distributor -> [frozen delta, withdrawable delta]
    for row in rows_of_order(order.id):
        if row.state == C.REVERSED.value:
            continue
        claw = clawbacks.get((row.order_line_id, row.level))
        taken_before = -claw.amount_fen if claw is not None else 0
        target = row.amount_fen - kept_after_refund(row.amount_fen, paid_fen, refunded_fen)
        delta = target - taken_before
        if whole and row.state == C.FROZEN.value:  # never paid out: the commission and its clawback are void
            row.state, row.reversed_at = COMMISSION_STATES.check(row.state, C.REVERSED), at
            if claw is not None:
                claw.state, claw.reversed_at = COMMISSION_STATES.check(claw.state, C.REVERSED), at
            if delta > 0:
                changes.setdefault(row.distributor_id, [0, 0])[0] -= delta
            continue
        if delta <= 0:
            continue
        change = changes.setdefault(row.distributor_id, [0, 0])
        if row.state == C.FROZEN.value:
            change[0] -= delta
        else:
            change[1] -= delta
        if claw is None:
            claw = CommissionRow(distributor_id=row.distributor_id, order_id=order.id,
                                 order_line_id=row.order_line_id, level=row.level,
                                 kind=CommissionKind.CLAWBACK.value, base_fen=row.base_fen, rate_bp=row.rate_bp,
                                 amount_fen=-target, state=row.state, settle_at=row.settle_at, created_at=at,
                                 settled_at=at if row.state == C.WITHDRAWABLE.value else None)
            db.session.add(claw)
        else:
            claw.amount_fen = -target
    db.session.flush()
    taken: dict[int, int] = {}
    for distributor_id, (frozen, withdrawable) in sorted(changes.items()):
        balance = balance_for_update(distributor_id)
        balance.frozen_fen += frozen
        balance.withdrawable_fen += withdrawable
        balance.lifetime_fen += withdrawable
        taken[distributor_id] = -(frozen + withdrawable)
        if refund_id is not None:
            notifications.commission_clawed_back(distributor_id, order, refund_id, taken[distributor_id], at)
    return taken


def reverse_for_refund(order: Order, at: datetime | None = None, refund_id: int | None = None) -> None:
    """The whole order was refunded: frozen commission is reversed;
    commission already withdrawable is taken back by a negative row."""
    take_back(order, order.total_fen, order.total_fen, refund_id=refund_id, at=at)


def taken_back(order_id: int) -> dict[tuple[int, int], int]:
    """What refunds took back so far, per (order line, level): reversed
    commission counts whole."""
    out: dict[tuple[int, int], int] = {}
    for row in rows_of_order(order_id, None):
        key = (row.order_line_id, row.level)
        if row.kind == CommissionKind.CLAWBACK.value and row.state != C.REVERSED.value:
            out[key] = out.get(key, 0) - row.amount_fen
        elif row.kind == CommissionKind.COMMISSION.value and row.state == C.REVERSED.value:
            out[key] = out.get(key, 0) + row.amount_fen
    return out


@dataclass(frozen=True)
class CommissionLine:
    """A row as the distributor reads it: with its order and product."""

    row: CommissionRow
    order_no: str
    line_name: str

    def __getattr__(self, name: str):
        return getattr(self.row, name)


def rows_of(distributor_id: int, limit: int = 100) -> list[CommissionLine]:
    found = db.session.execute(
        select(CommissionRow, Order.order_no, OrderLine.name)
        .join(Order, Order.id == CommissionRow.order_id).join(OrderLine, OrderLine.id == CommissionRow.order_line_id)
        .where(CommissionRow.distributor_id == distributor_id).order_by(CommissionRow.id.desc()).limit(limit))
    return [CommissionLine(row, order_no, name) for row, order_no, name in found]


def income_by_day(distributor_id: int, days: int = 30, at: datetime | None = None) -> list[tuple[str, int]]:
    """Commission posted per China-time day over the last ``days`` days
    (reversed rows excluded, clawbacks counted), oldest first, zeros included.
    Summed by the database: the biggest distributor posts tens of thousands of rows a month."""
    at = (at or now()).astimezone(CHINA)
    start = (at - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    by_day = china_day(CommissionRow.created_at)
    rows = db.session.execute(select(by_day, func.sum(CommissionRow.amount_fen)).where(
        CommissionRow.distributor_id == distributor_id, CommissionRow.created_at >= start,
        CommissionRow.state != C.REVERSED.value).group_by(by_day)).all()
    # "2026-12-01" (a date, or text on SQLite) → "12-01"; SUM is NUMERIC on PostgreSQL.
    totals = {str(day)[5:10]: int(amount) for day, amount in rows}
    days_shown = [(start + timedelta(days=i)).strftime("%m-%d") for i in range(days)]
    return [(day, totals.get(day, 0)) for day in days_shown]


def totals_from_rows(distributor_id: int) -> dict[str, int]:
    """The sums the balance must equal (used by the invariant checks)."""
    def total(*where) -> int:
        return int(db.session.scalar(select(func.coalesce(func.sum(CommissionRow.amount_fen), 0)).where(
            CommissionRow.distributor_id == distributor_id, *where)))  # SUM(BIGINT) is NUMERIC on PostgreSQL

    return {
        # A frozen clawback (a partial refund of an order not yet settled) counts against it.
        "frozen": total(CommissionRow.state == C.FROZEN.value),
        "lifetime": total(CommissionRow.state == C.WITHDRAWABLE.value),
    }
