"""The dashboard (概览) and the menu's badges: every figure equals the rows
behind it, "today" is the China-time day (its midnight is 16:00 UTC), and a
staff member sees only the cards of the areas their role may view."""
from __future__ import annotations

import itertools
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from admin_helpers import make_staff, staff_browser  # noqa: F401
from distribution_helpers import make_distributor, make_user
from handlers import dashboard, outbox
from handlers.clock import CHINA, now
from models import Application, Order, Refund, Unit, Withdrawal, db

_seq = itertools.count(1)
ALL = {dashboard.APPLICATIONS, dashboard.WITHDRAWALS, dashboard.ORDERS, dashboard.DISTRIBUTORS}


def card(page: str, name: str) -> tuple[str, str] | None:
    """A card's value and its small line, as shown; None when not shown."""
    found = re.search(rf'data-card="{name}"[^>]*>\s*<div class="ad-stat__label">[^<]*</div>\s*'
                      r'<div class="ad-stat__value">([^<]*)</div>\s*'
                      r'(?:<div class="ad-stat__sub">([^<]*)</div>)?', page)
    return (found.group(1).strip(), (found.group(2) or "").strip()) if found else None


def card_link(page: str, name: str) -> str | None:
    found = re.search(rf'<a class="ad-stat[^"]*" data-card="{name}" href="([^"]+)"', page)
    return found.group(1).replace("&amp;", "&") if found else None


def merchant_unit_id() -> int:
    return db.session.scalars(select(Unit.id).where(Unit.distributor_id.is_(None))).first()


def order(status: str, total_fen: int, paid_at=None) -> Order:
    n = next(_seq)
    at = paid_at or now()
    row = Order(order_no=f"T{n:012d}", unit_id=merchant_unit_id(), guest_mobile="13800138000", status=status,
                goods_fen=total_fen, total_fen=total_fen, receiver_name="张三", receiver_mobile="13800138000",
                receiver_address="上海市徐汇区漕溪北路 1 号", created_at=at - timedelta(minutes=5),
                expires_at=at + timedelta(minutes=25), paid_at=paid_at)
    db.session.add(row)
    db.session.flush()
    return row


def refund(of: Order, amount_fen: int, status: str, origin: str = "merchant", finished_at=None) -> Refund:
    row = Refund(order_id=of.id, origin=origin, out_refund_no=f"R{next(_seq):012d}", amount_fen=amount_fen,
                 reason="测试", status=status, finished_at=finished_at, partial=True)
    db.session.add(row)
    return row


def withdrawal(distributor_id: int, amount_fen: int, status: str) -> Withdrawal:
    row = Withdrawal(distributor_id=distributor_id, request_key=f"k{next(_seq)}", amount_fen=amount_fen, fee_fen=0,
                     status=status)
    db.session.add(row)
    return row


def application(status: str = "pending") -> Application:
    row = Application(user_id=make_user().id, real_name="李四", mobile="13900139000", reason="想分享", status=status)
    db.session.add(row)
    return row


@pytest.fixture
def shop(app):
    """A day of a shop, with rows on both sides of China's midnight."""
    start, _ = dashboard.china_day(now())
    today, later, yesterday = start, start + timedelta(seconds=1), start - timedelta(seconds=1)
    d1, d2 = make_distributor("甲"), make_distributor("乙")
    old = make_distributor("丙")
    old.approved_at = yesterday - timedelta(hours=3)
    for status in ("pending", "pending", "rejected", "approved"):
        application(status)
    for amount, status in ((1000, "requested"), (2345, "requested"), (5000, "transferring"), (800, "paid"),
                           (900, "rejected"), (700, "failed")):
        withdrawal(d1.id, amount, status)
    withdrawal(d2.id, 4000, "transferring")
    paid_today = [order("paid", 1990, today), order("paid", 5000, later)]
    order("paid", 700, yesterday)                    # to ship, paid yesterday
    order("shipped", 3000, yesterday)
    order("pending", 1200)
    refunded = order("refunded", 10000, later)       # paid today, refunded today
    done = order("completed", 2500, yesterday - timedelta(days=2))
    refund(refunded, 10000, "succeeded", finished_at=later)
    refund(done, 500, "succeeded", origin="gateway", finished_at=today)     # an old order's partial refund
    refund(done, 300, "succeeded", origin="auto", finished_at=today)        # a second payment given back
    refund(done, 700, "succeeded", finished_at=yesterday)                   # yesterday's
    refund(done, 100, "pending")
    refund(done, 200, "abnormal")
    refund(done, 250, "failed", finished_at=today)
    outbox.commit()
    sales = sum(o.total_fen for o in paid_today) + refunded.total_fen
    return {"sales": sales, "refunded": 10000 + 500, "start": start}


def test_the_figures_equal_the_rows_behind_them(app, base, staff_browser, shop):
    page = staff_browser("owner").get(f"{base}/admin/").text
    assert "欢迎" in page
    assert card(page, "applications")[0] == "2"
    assert card(page, "withdrawals") == ("2", "合计 ¥33.45")
    assert card(page, "transfers") == ("2", "微信转账 合计 ¥90.00")
    assert card(page, "to_ship")[0] == "3"
    assert card(page, "refunds")[0] == "2"
    net = shop["sales"] - shop["refunded"]
    assert card(page, "net_sales")[0] == f"¥{'-' if net < 0 else ''}{abs(net) // 100}.{abs(net) % 100:02d}"
    assert card(page, "net_sales")[1] == f"销售 ¥{shop['sales'] / 100:.2f} − 退款 ¥{shop['refunded'] / 100:.2f}"
    assert card(page, "orders_paid")[0] == "3"
    assert card(page, "new_distributors")[0] == "2"
    assert shop["start"].astimezone(CHINA).strftime("%Y-%m-%d") in page


def test_today_is_the_china_time_day_around_midnight(app, shop):
    start = shop["start"]
    assert start.astimezone(CHINA).hour == 0 and start.utcoffset() == timedelta(hours=8)
    assert start.astimezone(CHINA).strftime("%H:%M") == "00:00"
    before_midnight = dashboard.today(ALL, at=start - timedelta(microseconds=1))
    after_midnight = dashboard.today(ALL, at=start)
    # Yesterday (China time) held the order paid at 23:59:59 and the 7.00 refund.
    assert (before_midnight.orders_paid, before_midnight.sales_fen) == (2, 700 + 3000)
    assert before_midnight.refunded_fen == 700 and before_midnight.new_distributors == 1
    assert (after_midnight.orders_paid, after_midnight.sales_fen) == (3, shop["sales"])
    assert after_midnight.refunded_fen == shop["refunded"] and after_midnight.new_distributors == 2
    assert after_midnight.net_fen == shop["sales"] - shop["refunded"]
    # The same instant seen as a UTC day would be wrong: 16:00 UTC is China's midnight.
    assert start.astimezone(CHINA).date() != (start - timedelta(seconds=1)).astimezone(CHINA).date()


@pytest.mark.parametrize("role,shown,hidden", [
    ("owner", {"applications", "withdrawals", "transfers", "to_ship", "refunds", "net_sales", "orders_paid",
               "new_distributors"}, set()),
    ("operator", {"applications", "to_ship", "refunds", "net_sales", "orders_paid", "new_distributors"},
     {"withdrawals", "transfers"}),
    ("finance", {"withdrawals", "transfers", "to_ship", "refunds", "net_sales", "orders_paid", "new_distributors"},
     {"applications"}),
    ("shipping", {"to_ship", "refunds", "net_sales", "orders_paid"},
     {"applications", "withdrawals", "transfers", "new_distributors"}),
])
def test_each_role_sees_only_the_cards_of_its_areas(app, base, staff_browser, shop, role, shown, hidden):
    page = staff_browser(role).get(f"{base}/admin/")
    assert page.status_code == 200
    assert {name for name in shown | hidden if card(page.text, name)} == shown
    if role == "shipping":
        assert "¥33.45" not in page.text and "分销申请" not in page.text


def test_cards_link_to_their_lists_only_where_the_page_exists(app, live, base, staff_browser, shop):
    page = staff_browser("owner").get(f"{base}/admin/").text
    expected = {"applications": ("admin.applications", "/admin/applications"),
                "withdrawals": ("admin.withdrawals", "/admin/withdrawals?status=requested"),
                "transfers": ("admin.withdrawals", "/admin/withdrawals?status=transferring"),
                "to_ship": ("admin.orders", "/admin/orders?status=paid")}
    for name, (endpoint, href) in expected.items():
        assert card_link(page, name) == (href if endpoint in live.view_functions else None), name
    for href in re.findall(r'data-card="[a-z_]+" href="([^"]+)"', page):
        assert staff_browser("owner").get(base + href.replace("&amp;", "&")).status_code == 200, href


def test_badges_count_what_waits_next_to_the_menu(app, live, base, staff_browser, shop):
    page = staff_browser("owner").get(f"{base}/admin/").text
    for label, endpoint, count in (("分销申请", "admin.applications", 2), ("提现", "admin.withdrawals", 2),
                                   ("订单", "admin.orders", 3)):
        if endpoint in live.view_functions:
            assert re.search(rf'>{label}<span class="ad-badge">{count}</span>', page), label
    assert dashboard.badges(ALL) == {"applications": 2, "withdrawals": 2, "orders": 3}
    # Shipping staff see only the orders' badge (when the orders page exists).
    shipping = staff_browser("shipping").get(f"{base}/admin/").text
    assert not re.search(r'>(分销申请|提现)<span class="ad-badge">', shipping)
    assert dashboard.badges({dashboard.ORDERS}) == {"orders": 3}


def test_an_empty_shop_shows_zeros_and_no_badges(app, base, staff_browser):
    page = staff_browser("owner").get(f"{base}/admin/").text
    assert card(page, "applications")[0] == "0" and card(page, "withdrawals") == ("0", "合计 ¥0.00")
    assert card(page, "net_sales")[0] == "¥0.00" and card(page, "orders_paid")[0] == "0"
    assert 'class="ad-badge"' not in page


def test_badges_are_not_counted_for_the_login_page_or_htmx_fragments(app, base, staff_browser, shop):
    import requests

    assert 'class="ad-badge"' not in requests.get(f"{base}/admin/login").text
    owner = staff_browser("owner")
    fragment = owner.get(f"{base}/admin/", headers={"HX-Request": "true"})
    assert fragment.status_code == 200


def test_the_dashboard_changes_nothing(app, base, staff_browser, shop):
    from models import AuditEntry

    owner = staff_browser("owner")
    before = db.session.query(AuditEntry).count()
    for _ in range(2):
        assert owner.get(f"{base}/admin/").status_code == 200
    db.session.expire_all()
    assert db.session.query(AuditEntry).count() == before
    assert owner.post(f"{base}/admin/", data={}).status_code in (400, 405)


def test_today_follows_the_sandbox_clock(app, base, staff_browser):
    from handlers import audit, clock

    try:
        clock.move_forward(1, actor=audit.SYSTEM)
        outbox.commit()
        clock.forget()
        order("paid", 4321, now())          # paid "today" in the moved product time
        order("paid", 1000, clock.real_now())  # paid in real time: yesterday for the product
        outbox.commit()
        page = staff_browser("owner").get(f"{base}/admin/").text
        tomorrow = (clock.real_now() + timedelta(days=1)).astimezone(CHINA).strftime("%Y-%m-%d")
        assert f"现在是 {tomorrow}" in page and "沙箱时间已拨快 1 天" in page
        assert card(page, "orders_paid")[0] == "1" and card(page, "net_sales")[0] == "¥43.21"
    finally:
        outbox.rollback()
        clock.back_to_real_time(actor=audit.SYSTEM)
        outbox.commit()
        clock.forget()
    assert "沙箱时间" not in staff_browser("owner").get(f"{base}/admin/").text


def test_a_badge_stops_counting_at_99_but_the_card_does_not(app, live, base, staff_browser):
    for _ in range(101):
        order("paid", 100, now())
    outbox.commit()
    assert dashboard.badges({dashboard.ORDERS}) == {"orders": 100}
    page = staff_browser("shipping").get(f"{base}/admin/").text
    assert card(page, "to_ship")[0] == "101"
    if "admin.orders" in live.view_functions:
        assert '>订单<span class="ad-badge">99+</span>' in page
