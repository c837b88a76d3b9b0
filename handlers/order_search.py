"""The staff's order list (admin 订单): filters, newest first, keyset pages.

Every filter is an equality (or a range on one column) that an index ending
in ``id`` serves (migration e8b000000008), so a page of 50 is an index range
scan whatever the number of orders. Text filters are resolved first to ids
(a unit's slug, a distributor's name or mobile), then the orders are read.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Mapping

from sqlalchemy import func, literal, or_, select
from sqlalchemy.orm import lazyload

from models import Distributor, Order, OrderLine, OrderStatus, Unit, db
from models.distributor import characters

from .clock import CHINA
from .errors import DomainError
from .orders import ORDER_NO

MOBILE_DIGITS = re.compile(r"^1[0-9]{10}$")
DATE_FIELDS = {"created": "下单时间", "paid": "付款时间"}
MAX_DISTRIBUTORS = 50  # a name that matches more is too vague to list orders by
# The query arguments the list reads (its page and its export).
FIELDS = ("status", "date_field", "since", "until", "unit", "distributor", "phone", "order_no")


@dataclass(frozen=True)
class OrderFilters:
    status: str = ""
    date_field: str = "created"
    since: date | None = None
    until: date | None = None
    unit: str = ""
    distributor: str = ""
    phone: str = ""
    order_no: str = ""
    given: dict[str, str] = field(default_factory=dict)  # what the form sent, for the page and its links


@dataclass(frozen=True)
class OrderListRow:
    order: Order
    unit_name: str
    unit_slug: str
    distributor_name: str | None
    items: str  # "first product" or "first product 等 N 件", as Order.title says it

    @property
    def id(self) -> int:
        return self.order.id


def _day(value: str, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise DomainError(f"{label}的格式应为 年-月-日，例如 2026-12-01") from None


def parse_filters(args: Mapping[str, str]) -> OrderFilters:
    """The list's query string, checked: a bad value is a clear message, not an empty list."""
    given = {k: (args.get(k) or "").strip()[:64] for k in FIELDS}
    given = {k: v for k, v in given.items() if v}
    status = given.get("status", "")
    if status and status not in {s.value for s in OrderStatus}:
        raise DomainError("没有这个订单状态")
    date_field = given.get("date_field", "created")
    if date_field not in DATE_FIELDS:
        raise DomainError("按下单时间或付款时间筛选")
    since, until = _day(given.get("since", ""), "开始日期"), _day(given.get("until", ""), "结束日期")
    if since and until and until < since:
        raise DomainError("结束日期早于开始日期")
    phone = re.sub(r"[\s-]", "", given.get("phone", "")).removeprefix("+86")
    if phone and not MOBILE_DIGITS.match(phone):
        raise DomainError("买家手机号应为 11 位数字")
    order_no = given.get("order_no", "")
    if order_no and not ORDER_NO.match(order_no):
        raise DomainError("订单号是 20 位数字")
    return OrderFilters(status=status, date_field=date_field, since=since, until=until, unit=given.get("unit", ""),
                        distributor=given.get("distributor", ""), phone=phone, order_no=order_no, given=given)


def _china_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=CHINA)


def _unit_ids(text: str) -> list[int]:
    query = select(Unit.id).where(Unit.slug == text)
    if text.isdigit() and len(text) < 10:
        query = select(Unit.id).where(or_(Unit.slug == text, Unit.id == int(text)))
    return list(db.session.scalars(query))


def _distributor_ids(text: str) -> list[int]:
    """By mobile (all 11 digits) or name (a part of it)."""
    if MOBILE_DIGITS.match(text):
        query = select(Distributor.id).where(Distributor.mobile == text)
    else:
        query = select(Distributor.id).where(Distributor.real_name.contains(text, autoescape=True))
        if db.session.get_bind().dialect.name == "postgresql":
            # A name holding the text holds each of its characters: the GIN index of names'
            # characters (ix_distributors_real_name_chars) finds those, the LIKE keeps the matches.
            holds_every = characters(Distributor.real_name).op("@>", is_comparison=True)
            query = query.where(holds_every(characters(literal(text))))
    return list(db.session.scalars(query.order_by(Distributor.id).limit(MAX_DISTRIBUTORS)))


def search(filters: OrderFilters, before: int | None = None, limit: int = 50) -> list[OrderListRow]:
    """Orders matching ``filters``, newest first, ``limit`` of them with an id
    below ``before``. Callers ask for one more than they show (admin.support.keyset)."""
    query = (select(Order, Unit.name, Unit.slug, Distributor.real_name)
             .join(Unit, Unit.id == Order.unit_id)
             .outerjoin(Distributor, Distributor.id == Order.distributor_id))
    if filters.order_no:
        query = query.where(Order.order_no == filters.order_no)
    if filters.status:
        query = query.where(Order.status == filters.status)
    if filters.phone:
        query = query.where(Order.receiver_mobile == filters.phone)
    if filters.unit:
        ids = _unit_ids(filters.unit)
        if not ids:
            return []
        query = query.where(Order.unit_id.in_(ids))
    if filters.distributor:
        ids = _distributor_ids(filters.distributor)
        if not ids:
            return []
        # Orders the distributor sold (level 1) or earned on as the seller's parent (level 2).
        query = query.where(or_(Order.distributor_id.in_(ids), Order.parent_distributor_id.in_(ids)))
    column = Order.paid_at if filters.date_field == "paid" else Order.created_at
    if filters.since:
        query = query.where(column >= _china_midnight(filters.since))
    if filters.until:
        query = query.where(column < _china_midnight(filters.until + timedelta(days=1)))  # the end day included
    if before:
        query = query.where(Order.id < before)
    # The lines are summarised by one grouped query below, not loaded as objects.
    found = db.session.execute(query.options(lazyload(Order.lines)).order_by(Order.id.desc()).limit(limit)).all()
    items = _items_of([order.id for order, *_ in found])
    return [OrderListRow(order, unit_name, slug, name, items.get(order.id, "")) for order, unit_name, slug, name
            in found]


def _items_of(order_ids: list[int]) -> dict[int, str]:
    if not order_ids:
        return {}
    first = (select(OrderLine.order_id, func.min(OrderLine.id).label("first_id"), func.count().label("n"))
             .where(OrderLine.order_id.in_(order_ids)).group_by(OrderLine.order_id).subquery())
    found = db.session.execute(select(first.c.order_id, OrderLine.name, first.c.n)
                               .join(OrderLine, OrderLine.id == first.c.first_id))
    return {order_id: name if n <= 1 else f"{name} 等 {n} 件" for order_id, name, n in found}
