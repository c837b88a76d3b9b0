"""What the merchant's distributor pages read: the list with each
distributor's figures, and one distributor's team, orders, ledger, touches,
withdrawals and history.

The list is a keyset page by id (newest first). Its figures — customers,
level-2s, sales gross and net of refunds, the balance — are grouped
queries over the ids on the page only, each an index range per id, so a
page costs the same at 100 000 distributors as at 100.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterator

from sqlalchemy import case, func, literal_column, or_, select, union_all
from sqlalchemy.orm import aliased

from models import (AuditEntry, Balance, Distributor, DistributorStatus, Order, ReferralTouch, Unit, User,
                    Withdrawal, db)

from . import audit, commissions, withdrawals
from .clock import CHINA
from .codes import normalise_invite_code
from .commissions import CommissionLine
from .errors import DomainError, NotFound

STATES = {DistributorStatus.ACTIVE.value: "正常", DistributorStatus.FROZEN.value: "已冻结"}
LEVELS = {"1": "一级", "2": "二级"}
TREE_LEVEL2 = 50     # level-2s shown under a level-1
TREE_CUSTOMERS = 20  # customers shown under each distributor
RECENT = 30


@dataclass(frozen=True)
class Figures:
    customers: int = 0
    level2: int = 0
    gross_fen: int = 0      # every paid order in their unit
    net_fen: int = 0        # less what was refunded
    frozen_fen: int = 0
    withdrawable_fen: int = 0  # below zero when a claw-back is owed
    reserved_fen: int = 0
    withdrawn_fen: int = 0

    @property
    def owed_fen(self) -> int:
        """Commission refunds took back after it was withdrawable, not yet made good."""
        return max(0, -self.withdrawable_fen)


@dataclass(frozen=True)
class Row:
    distributor: Distributor
    unit: Unit
    parent: Distributor | None
    figures: Figures

    @property
    def id(self) -> int:  # for admin.support.keyset
        return self.distributor.id


@dataclass(frozen=True)
class Listing:
    rows: list[Row]  # newest first, limit + 1 of them when a next page exists
    filters: dict[str, str]


def _day(text: str | None, name: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise DomainError(f"{name}格式应为 2026-12-01") from None


def _start(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), CHINA)


def _filtered(filters: dict[str, str]):
    """The list's query: level, state, join dates (China days), parent
    (a level-1's number) and ``q`` — a name, a mobile or an invite code."""
    level, state, parent, q = (filters.get(k, "") for k in ("level", "state", "parent", "q"))
    first, last = _day(filters.get("from"), "加入日期（起）"), _day(filters.get("to"), "加入日期（止）")
    if level and level not in LEVELS:
        raise DomainError("级别只能是一级或二级")
    if state and state not in STATES:
        raise DomainError("没有这个状态")
    if parent and not (parent.isascii() and parent.isdigit() and len(parent) <= 9):
        raise DomainError("上级请填写一级分销商的编号（数字）")
    parent_row = aliased(Distributor)
    query = (select(Distributor, Unit, parent_row).join(Unit, Unit.distributor_id == Distributor.id)
             .outerjoin(parent_row, parent_row.id == Distributor.parent_id))
    if level:
        query = query.where(Distributor.level == int(level))
    if state:
        query = query.where(Distributor.status == state)
    if parent:
        query = query.where(Distributor.parent_id == int(parent))
    if first:
        query = query.where(Distributor.approved_at >= _start(first))
    if last:
        query = query.where(Distributor.approved_at < _start(last + timedelta(days=1)))
    if q:
        like = "%" + q.replace("\\", "").replace("%", "").replace("_", "") + "%"
        matches = [Distributor.real_name.like(like), Distributor.mobile.like(like)]
        code = normalise_invite_code(q)
        if code:
            matches.append(Unit.invite_code == code)
        query = query.where(or_(*matches))
    return query


def listing(filters: dict[str, str], before_id: int | None = None, limit: int = 50) -> Listing:
    query = _filtered(filters).order_by(Distributor.id.desc()).limit(limit + 1)
    if before_id:
        query = query.where(Distributor.id < before_id)
    found = db.session.execute(query).all()
    figures = figures_of([d for d, _, _ in found])
    return Listing([Row(d, unit, parent, figures[d.id]) for d, unit, parent in found], filters)


def rows_for_export(filters: dict[str, str], page: int = 500) -> Iterator[Row]:
    """Every distributor the filters find, newest first, with the list's
    figures, fetched a keyset page at a time (for a CSV export)."""
    _filtered(filters)  # bad filters refused before the first row
    before = None
    while True:
        rows = listing(filters, before, limit=page).rows[:page]
        yield from rows
        if len(rows) < page:
            return
        before = rows[-1].id


def _sums(query) -> dict[int, int]:
    return {key: int(value or 0) for key, value in db.session.execute(query)}  # SUM is NUMERIC on PostgreSQL


def _customer_counts(user_ids: list[int]) -> dict[int, int]:
    """How many customers (not distributors) each of these users brought, in
    one statement: everyone brought, from (referrer_id, id), less the
    recruits, from the partial index of distributors' users; both index-only."""
    brought, recruits = literal_column("1"), literal_column("-1")
    rows = db.session.execute(union_all(
        select(User.referrer_id, brought, func.count()).where(User.referrer_id.in_(user_ids))
        .group_by(User.referrer_id),
        select(User.referrer_id, recruits, func.count()).where(User.referrer_id.in_(user_ids), User.is_distributor)
        .group_by(User.referrer_id))).all()
    counts: dict[int, int] = {}
    for referrer_id, sign, n in rows:
        counts[referrer_id] = counts.get(referrer_id, 0) + sign * n
    return counts


def figures_of(distributors: list[Distributor]) -> dict[int, Figures]:
    """Each distributor's figures: grouped queries over these ids only, each
    an index range per id."""
    ids = [d.id for d in distributors]
    if not ids:
        return {}
    user_ids = [d.user_id for d in distributors]
    customers = _customer_counts(user_ids)
    level2 = _sums(select(Distributor.parent_id, func.count()).where(Distributor.parent_id.in_(ids))
                   .group_by(Distributor.parent_id))
    gross, refunded = {}, {}
    for distributor_id, paid_fen, refunded_fen in db.session.execute(
            select(Order.distributor_id, func.sum(case((Order.paid_at.is_not(None), Order.total_fen))),
                   func.sum(Order.refunded_fen))
            .where(Order.distributor_id.in_(ids)).group_by(Order.distributor_id)):
        gross[distributor_id], refunded[distributor_id] = int(paid_fen or 0), int(refunded_fen or 0)
    balances = {b.distributor_id: b for b in db.session.scalars(select(Balance).where(Balance.distributor_id.in_(ids)))}
    out = {}
    for d in distributors:
        b = balances.get(d.id)
        out[d.id] = Figures(
            customers=customers.get(d.user_id, 0), level2=level2.get(d.id, 0), gross_fen=gross.get(d.id, 0),
            net_fen=gross.get(d.id, 0) - refunded.get(d.id, 0),
            frozen_fen=b.frozen_fen if b else 0, withdrawable_fen=b.withdrawable_fen if b else 0,
            reserved_fen=b.reserved_fen if b else 0, withdrawn_fen=b.withdrawn_fen if b else 0)
    return out


# -- one distributor ---------------------------------------------------------------------------------

@dataclass
class Node:
    """A distributor in the team tree with the customers they brought."""

    distributor: Distributor
    customers: list[User]
    customer_count: int
    children: list["Node"]
    child_count: int = 0
    is_here: bool = False  # the distributor whose page this is


@dataclass(frozen=True)
class Touch:
    touch: ReferralTouch
    user: User


@dataclass(frozen=True)
class Detail:
    distributor: Distributor
    unit: Unit
    parent: Distributor | None
    referrer: Distributor | None   # who brought them (a level-2's recruiter may be a level-2)
    figures: Figures
    tree: Node
    orders: list[Order]            # in their unit, or paying them as level 2
    ledger: list[CommissionLine]
    touches: list[Touch]
    withdrawals: list[Withdrawal]
    history: list[AuditEntry]      # freezes, unfreezes and moves, newest first


def customers_of(user_ids: list[int], each: int = TREE_CUSTOMERS) -> tuple[dict[int, list[User]], dict[int, int]]:
    """The customers (not distributors) each of these users brought: the
    newest ``each`` of them, and how many in all. The newest are read per
    user from (referrer_id, id) backwards, stopping at ``each``, all in one
    statement, however many customers the biggest has."""
    if not user_ids:
        return {}, {}
    newest = [select(User.id).where(User.referrer_id == user_id, ~User.is_distributor)
              .order_by(User.id.desc()).limit(each).subquery() for user_id in user_ids]
    shown: dict[int, list[User]] = {}
    for user in db.session.scalars(select(User).where(User.id.in_(union_all(*(select(n.c.id) for n in newest))))
                                   .order_by(User.id.desc())):
        shown.setdefault(user.referrer_id, []).append(user)
    return shown, _customer_counts(user_ids)


def tree_of(distributor: Distributor) -> Node:
    """Level 1 → level 2 → their customers: a level-1's whole team, or a
    level-2 under their level-1 (without the level-1's other level-2s)."""
    top = distributor if distributor.level == 1 else distributor.parent
    level2 = [distributor] if distributor.level == 2 else list(db.session.scalars(
        select(Distributor).where(Distributor.parent_id == top.id).order_by(Distributor.id.desc())
        .limit(TREE_LEVEL2)))
    level2_count = len(level2) if distributor.level == 2 else db.session.scalar(
        select(func.count()).select_from(Distributor).where(Distributor.parent_id == top.id))
    shown, counts = customers_of([top.user_id] + [d.user_id for d in level2])
    children = [Node(d, shown.get(d.user_id, []), counts.get(d.user_id, 0), [], is_here=d.id == distributor.id)
                for d in level2]
    return Node(top, shown.get(top.user_id, []), counts.get(top.user_id, 0), children, level2_count,
                is_here=top.id == distributor.id)


def get(distributor_id: int) -> Distributor:
    found = db.session.get(Distributor, distributor_id)
    if found is None:
        raise NotFound("分销商不存在")
    return found


def detail(distributor_id: int) -> Detail:
    d = get(distributor_id)
    unit = db.session.scalars(select(Unit).where(Unit.distributor_id == d.id)).one()
    referrer_user = d.user.referrer_id
    referrer = db.session.scalars(select(Distributor).where(Distributor.user_id == referrer_user)).one_or_none() \
        if referrer_user else None
    # The newest of each kind from its own (…, id) index, then the newest of both: an OR would sort all
    # of the biggest distributor's hundreds of thousands of orders.
    newest = [select(Order.id).where(column == d.id).order_by(Order.id.desc()).limit(RECENT).subquery()
              for column in (Order.distributor_id, Order.parent_distributor_id)]
    orders = list(db.session.scalars(select(Order).where(Order.id.in_(union_all(*(select(n.c.id) for n in newest))))
                                     .order_by(Order.id.desc()).limit(RECENT)))
    touches = [Touch(t, u) for t, u in db.session.execute(
        select(ReferralTouch, User).join(User, User.id == ReferralTouch.user_id)
        .where(ReferralTouch.unit_id == unit.id)
        .order_by(ReferralTouch.at.desc(), ReferralTouch.id.desc()).limit(RECENT))]
    history = audit.entries(target_type="distributor", target_id=str(d.id), limit=RECENT)
    return Detail(d, unit, d.parent, referrer, figures_of([d])[d.id], tree_of(d), orders,
                  commissions.rows_of(d.id, limit=RECENT), touches, withdrawals.of_distributor(d.id, RECENT), history)
