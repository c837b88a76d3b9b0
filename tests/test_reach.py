"""Reach (issue 11): each open of a unit's or product's shared link is a
visit, and the distributor centre shows, for today and the last 7 days
(China days), visits, new customers, orders and sales from their shares."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from sqlalchemy import event, select

from distribution_helpers import make_user
from handlers import outbox, payments, reach, referrals
from handlers.clock import CHINA, now
from models import Order, PayChannel, Source, Unit, db
from test_shop_pages import (buy, browsers, catalogue_items, guest, mark_paid_by_gateway, person,  # noqa: F401
                             user_of)

SHARED = "from=singlemessage&isappinstalled=0"


def slug_of(browser, base) -> str:
    return re.search(r"/h5/u/([A-Za-z0-9_-]+)", browser.get(f"{base}/h5/center").text).group(1)


def centre_rows(browser, base) -> dict[str, list[str]]:
    """The centre's reach table: {今日: [访问, 人, 新顾客, 订单, 销售额], 近7天: […]}."""
    table = re.search(r'<table class="fx-reach" id="reach">(.*?)</table>', browser.get(f"{base}/h5/center").text,
                      re.S).group(1)
    rows = {}
    for label, cells in re.findall(r'<th scope="row">([^<]+)</th>(.*?)</tr>', table, re.S):
        rows[label] = re.findall(r"<td>([^<]*)(?:<small>([^<]*) 人</small>)?</td>", cells)
    return {k: [v[0][0], v[0][1]] + [c[0] for c in v[1:]] for k, v in rows.items()}


def refund_at_gateway(order: Order, fen: int) -> None:
    """A refund made in the gateway's console (mark_paid_by_gateway's trade is T<order no>)."""
    assert payments.refunded_at_gateway(PayChannel.ALIPAY, order.order_no, f"T{order.order_no}", amount_fen=fen,
                                        out_refund_no=f"RF{order.order_no}").ok
    outbox.commit()


def unit_of(slug: str) -> Unit:
    db.session.rollback()
    return db.session.scalars(select(Unit).where(Unit.slug == slug)).one()


def test_the_centre_shows_what_sharing_brought_today_and_this_week(app, person, guest, base, catalogue_items):
    seller = person("阿花", distributor=True)
    slug = slug_of(seller, base)
    assert centre_rows(seller, base) == {"今日": ["0", "0", "0", "0", "0.00"], "近7天": ["0", "0", "0", "0", "0.00"]}

    friend = person("朋友")
    friend.get(f"{base}/h5/u/{slug}?{SHARED}")                                  # visit 1, a new customer
    friend.get(f"{base}/h5/u/{slug}/p/{catalogue_items[1].id}?{SHARED}")      # visit 2, the same person
    guest.get(f"{base}/h5/u/{slug}/p/{catalogue_items[0].id}?from=timeline&isappinstalled=0")  # visit 3
    seller.get(f"{base}/h5/u/{slug}")                                          # their own: not reach
    guest.get(f"{base}/h5/p/{catalogue_items[0].id}")                           # the menu's product page: no visit

    mark_paid_by_gateway(buy(friend, base, catalogue_items[1]))                 # 89.00
    second = buy(friend, base, catalogue_items[0])                              # 168.00, 25.00 refunded later
    mark_paid_by_gateway(second)
    refund_at_gateway(second, 2500)
    buy(friend, base, catalogue_items[2])                                       # unpaid: not counted

    # Three days ago: a visit, a customer bound, an order paid.
    unit, earlier = unit_of(slug), now() - timedelta(days=3)
    reach.log_visit(unit, "g:earlier", at=earlier)
    referrals.attribute_referral(make_user("老朋友"), Source.LINK, slug, at=earlier)
    reach.log_visit(unit, "g:long-ago", at=now() - timedelta(days=9))         # outside the week
    outbox.commit()
    old = buy(friend, base, catalogue_items[2])
    mark_paid_by_gateway(old)
    db.session.get(Order, old.id).paid_at = earlier
    db.session.commit()

    assert centre_rows(seller, base) == {"今日": ["3", "2", "1", "2", "232.00"],
                                         "近7天": ["4", "3", "2", "3", "251.90"]}
    assert "扣除退款" in seller.get(f"{base}/h5/center").text


def test_an_order_refunded_in_full_is_left_out(app, person, base, catalogue_items):
    seller = person("阿花", distributor=True)
    friend = person("朋友")
    friend.get(f"{base}/h5/u/{slug_of(seller, base)}")
    order = buy(friend, base, catalogue_items[1])
    mark_paid_by_gateway(order)
    assert centre_rows(seller, base)["今日"][3:] == ["1", "89.00"]
    refund_at_gateway(order, order.total_fen)
    assert centre_rows(seller, base)["今日"][3:] == ["0", "0.00"]


def test_days_are_china_days(app):
    unit = db.session.scalars(select(Unit).order_by(Unit.id)).first()
    # 2026-06-10 09:00 in China.
    at = datetime(2026, 6, 10, 1, 0, tzinfo=timezone.utc)
    midnight = datetime(2026, 6, 10, tzinfo=CHINA)
    for when, who in ((midnight, "a"),                                   # today's first second
                      (midnight - timedelta(seconds=1), "b"),            # yesterday, in the week
                      (midnight - timedelta(days=6), "c"),               # the week's first second
                      (midnight - timedelta(days=6, seconds=1), "d")):   # before the week
        reach.log_visit(unit, who, at=when.astimezone(timezone.utc))
    db.session.commit()
    figures = reach.reach_of(unit.id, at=at)
    assert (figures.today.visits, figures.week.visits, figures.week.visitors) == (1, 3, 3)
    assert reach.day_starts(at) == (midnight, midnight - timedelta(days=6))


def test_the_figures_take_three_queries(app):
    unit = db.session.scalars(select(Unit).order_by(Unit.id)).first()
    statements = []

    def count(*args):
        if "sandbox_clock" not in args[2]:  # what time it is (cached for a second), not the figures
            statements.append(args[2])

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        figures = reach.reach_of(unit.id)
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(statements) == 3 and figures == reach.Reach(reach.Figures(), reach.Figures())
