"""The distributor's money pages and the notification centre (issue 6,
points 5-7), walked by a browser logged in through the sandbox's WeChat
OAuth against the live server. The sales behind the figures are made
through the product's own handlers, as the shop and the gateways would."""
from __future__ import annotations

import html
import itertools
import re
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from distribution_helpers import make_distributor, make_user
from handlers.audit import SYSTEM
from handlers import audit, catalogue, commissions, notifications, orders, outbox, payments, referrals, withdrawals
from handlers.clock import CHINA, now
from handlers.payments import GatewayTrade
from models import (Balance, CommissionRow, Notification, PayChannel, Refund, SandboxMessage, Source, User,
                    Withdrawal, db)
from test_browser_buy import driver  # noqa: F401  (the headless phone browser)

RECEIVER = orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号")
_txn = itertools.count(5_000_000)
_clock = itertools.count(int(now().timestamp()))


# -- reading pages as a person does ----------------------------------------

def visible(page: str) -> str:
    """The page's text as a reader sees it: tags gone, spaces collapsed."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def figures(page: str) -> dict[str, str]:
    """The money box at the top of /h5/income: label → yuan."""
    text = visible(page)
    found = {"可提现": re.search(r"可提现（元） (-?\d+\.\d\d)", text).group(1)}
    for label in ("冻结中", "提现中", "已提现", "累计收入"):
        found[label] = re.search(rf"(-?\d+\.\d\d) {label}", text).group(1)
    return found


def commission_rows(page: str) -> list[str]:
    return [visible(row) for row in re.findall(r'<div class="weui-cell fx-commission">(.*?)</div>\s*</div>',
                                               page, flags=re.S)]


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def withdraw_form(browser, base) -> dict[str, str]:
    page = browser.get(f"{base}/h5/withdraw").text
    return {"csrf_token": csrf(page), "request_key": re.search(r'name="request_key" value="([^"]+)"', page).group(1)}


# -- sales, made through the handlers --------------------------------------

def product(name="礼盒", price=12345, stock=100):
    p = catalogue.add_product(name, price, stock)
    outbox.commit()
    return p


def customer_of(d, nickname="顾客"):
    user = make_user(nickname)
    referrals.attribute_referral(user, Source.QR, d.unit.scene)
    outbox.commit()
    return user


def paid_order(user, items, at=None):
    order = orders.place_order(orders.Buyer(user=user), items, RECEIVER, at=at)
    outbox.commit()
    trade = GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, str(next(_txn)), order.total_fen)
    assert payments.mark_paid(trade, at=at).ok
    outbox.commit()
    return order


def complete(order, at=None):
    orders.ship_order(order.order_no, "顺丰速运", "SF1234567890", at=at, actor=SYSTEM)
    orders.confirm_receipt(order.order_no, at=at)
    outbox.commit()


def settle_everything(settings):
    """The freeze window passes for every completed order."""
    commissions.sweep(at=now() + timedelta(days=settings["distribution"]["freeze_days"], minutes=1))
    outbox.commit()


def refund(order):
    payments.start_refund(order.order_no, "退货", actor=SYSTEM)
    outbox.commit()
    r = db.session.scalars(select(Refund).where(Refund.order_id == order.id, Refund.status == "pending")).one()
    assert payments.finish_refund(PayChannel.WECHATPAY, r.out_refund_no, True, r.amount_fen).ok
    outbox.commit()


def fresh(model, **where):
    db.session.rollback()
    query = select(model)
    for key, value in where.items():
        query = query.where(getattr(model, key) == value)
    return db.session.scalars(query).all()


@pytest.fixture
def shop_owner(person):
    """A distributor, logged in, whose customer bought two ¥123.45 gift boxes
    today: ¥24.69 commission (10 %, down to the fen), frozen."""
    browser = person("店主")
    d = make_distributor("店主", openid=browser.openid)
    browser.distributor = d
    browser.order = paid_order(customer_of(d), {product().id: 2})
    return browser


@pytest.fixture
def rich_owner(shop_owner, settings):
    """The same, after the order was completed and the freeze window passed."""
    complete(shop_owner.order)
    settle_everything(settings)
    return shop_owner


# -- /h5/income --------------------------------------------------------------

def test_income_shows_frozen_commission_before_settlement(shop_owner, base):
    page = shop_owner.get(f"{base}/h5/income")
    assert page.status_code == 200 and "我的收入" in page.text
    assert figures(page.text) == {"可提现": "0.00", "冻结中": "24.69", "提现中": "0.00", "已提现": "0.00",
                                  "累计收入": "0.00"}
    [row] = commission_rows(page.text)
    order_no = shop_owner.order.order_no
    assert "礼盒" in row and f"订单 {order_no}" in row and "一级佣金" in row and "24.69" in row
    assert row.endswith("冻结中")


def test_income_shows_withdrawable_after_settlement(rich_owner, base):
    page = rich_owner.get(f"{base}/h5/income").text
    assert figures(page) == {"可提现": "24.69", "冻结中": "0.00", "提现中": "0.00", "已提现": "0.00",
                             "累计收入": "24.69"}
    [row] = commission_rows(page)
    assert rich_owner.order.order_no in row and row.endswith("可提现")


def test_the_chart_has_a_bar_for_today_and_thirty_days(shop_owner, base):
    page = shop_owner.get(f"{base}/h5/income").text
    bars = re.findall(r'class="fx-chart__bar" style="height: (\d+)%" title="([^"]+)"', page)
    assert len(bars) == 30
    today = now().astimezone(CHINA).strftime("%m-%d")
    assert bars[-1] == ("100", f"{today}：24.69")  # the tallest: today's is the only income
    assert all(height == "0" for height, _ in bars[:-1])


def test_a_level2_earning_from_a_recruits_customer_reads_level2(person, base):
    browser = person("老店主")
    top = make_distributor("老店主", openid=browser.openid)
    recruit = make_distributor("新店主", referrer=top)
    order = paid_order(customer_of(recruit), {product("茶叶", 20000).id: 1})
    [row] = commission_rows(browser.get(f"{base}/h5/income").text)
    assert "茶叶" in row and order.order_no in row and "二级佣金" in row and "10.00" in row  # 5 % of ¥200


def test_a_refund_before_settlement_shows_the_row_refunded(shop_owner, base):
    refund(shop_owner.order)
    page = shop_owner.get(f"{base}/h5/income").text
    assert figures(page)["冻结中"] == "0.00"
    [row] = commission_rows(page)
    assert row.endswith("已退款")


def test_a_refund_after_settlement_shows_a_clawback_row(rich_owner, base):
    refund(rich_owner.order)
    page = rich_owner.get(f"{base}/h5/income").text
    assert figures(page)["可提现"] == "0.00" and figures(page)["累计收入"] == "0.00"
    clawback, commission = commission_rows(page)  # newest first
    assert rich_owner.order.order_no in clawback and "-24.69" in clawback and clawback.endswith("退款扣回")
    assert "24.69" in commission and commission.endswith("可提现")


def test_a_negative_balance_is_explained_on_both_pages(rich_owner, base):
    key = withdrawals.new_request_key()
    w = withdrawals.request_withdrawal(rich_owner.distributor, 2469, key)
    outbox.commit()
    withdrawals.pay_manually(w.id, "银行流水 001", actor=audit.SYSTEM)
    outbox.commit()
    refund(rich_owner.order)
    page = rich_owner.get(f"{base}/h5/income").text
    assert figures(page)["可提现"] == "-24.69" and "待抵扣" in visible(page)
    res = rich_owner.post(f"{base}/h5/withdraw", data={**withdraw_form(rich_owner, base), "amount": "1"})
    assert res.status_code == 400 and "待抵扣" in visible(res.text)


# -- /h5/withdraw ------------------------------------------------------------

def test_a_withdrawal_moves_money_to_reserved_and_shows_in_the_history(rich_owner, base):
    form = withdraw_form(rich_owner, base)
    res = rich_owner.post(f"{base}/h5/withdraw", data={**form, "amount": "¥10.5"}, allow_redirects=False)
    assert res.status_code == 302 and re.search(r"/h5/withdraw\?sent=\d+$", res.headers["Location"])
    [w] = fresh(Withdrawal)
    assert (w.amount_fen, w.status) == (1050, "requested")
    money = figures(rich_owner.get(f"{base}/h5/income").text)
    assert (money["可提现"], money["提现中"]) == ("14.19", "10.50")
    page = visible(rich_owner.get(f"{base}/h5/withdraw").text)
    assert "可提现 ¥14.19" in page and "¥10.50" in page and "审核中" in page
    sent = visible(rich_owner.get(base + res.headers["Location"]).text)
    assert "¥10.50 提现申请已提交" in sent


def test_the_history_follows_the_merchants_decisions(rich_owner, base, app):
    form = withdraw_form(rich_owner, base)
    rich_owner.post(f"{base}/h5/withdraw", data={**form, "amount": "5"})
    rich_owner.post(f"{base}/h5/withdraw", data={**withdraw_form(rich_owner, base), "amount": "3"})
    first, second = fresh(Withdrawal)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["withdrawals", "pay", str(first.id), "--reference", "银行流水 778"]).exit_code == 0
    assert runner.invoke(args=["withdrawals", "reject", str(second.id), "--reason", "账户信息有误"]).exit_code == 0
    page = visible(rich_owner.get(f"{base}/h5/withdraw").text)
    assert re.search(r"¥3\.00 .*账户信息有误 已驳回 ¥5\.00 .* 已到账", page), page
    money = figures(rich_owner.get(f"{base}/h5/income").text)
    assert (money["可提现"], money["提现中"], money["已提现"]) == ("19.69", "0.00", "5.00")


@pytest.fixture
def strict_shop(live):
    """The same product and database, served on a second port with a
    merchant's fee of 0.65 % and a daily limit of ¥20.00 (same secret key, so
    a browser's login holds on both)."""
    from werkzeug.serving import make_server

    from app import create_app
    from app.config import build
    from conftest import free_port, make_raw_config

    s = live.config["SETTINGS"]
    port = free_port()
    raw = make_raw_config(f"http://127.0.0.1:{port}", s["app"]["database_url"],
                          app={"secret_key": s["app"]["secret_key"]},
                          distribution={"withdraw_fee_bp": 65, "withdraw_daily_limit_fen": 2000})
    other = create_app(build(raw, {}, "tests"))
    server = make_server("127.0.0.1", port, other, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    with other.app_context():
        db.session.remove()
        db.engine.dispose()


def test_the_fee_and_the_daily_limit_are_on_the_page(rich_owner, strict_shop):
    page = visible(rich_owner.get(f"{strict_shop}/h5/withdraw").text)
    assert "手续费 0.65%（向下取整到分）" in page and "每日最多 ¥20.00" in page
    rich_owner.post(f"{strict_shop}/h5/withdraw", data={**withdraw_form(rich_owner, strict_shop), "amount": "19.99"})
    [w] = fresh(Withdrawal)
    assert (w.amount_fen, w.fee_fen, w.net_fen) == (1999, 12, 1987)  # 12.99 fen, down
    assert "¥19.99 到账 ¥19.87 " in visible(rich_owner.get(f"{strict_shop}/h5/withdraw").text)
    res = rich_owner.post(f"{strict_shop}/h5/withdraw", data={**withdraw_form(rich_owner, strict_shop),
                                                              "amount": "1.00"})
    assert res.status_code == 400 and "超过每日提现额度 ¥20.00" in visible(res.text)
    assert len(fresh(Withdrawal)) == 1


def test_a_double_submit_of_the_same_form_is_one_withdrawal(rich_owner, base):
    form = {**withdraw_form(rich_owner, base), "amount": "10"}
    for _ in range(2):
        assert rich_owner.post(f"{base}/h5/withdraw", data=form, allow_redirects=False).status_code == 302
    assert len(fresh(Withdrawal)) == 1
    assert fresh(Balance)[0].reserved_fen == 1000


def test_a_double_tap_at_the_same_moment_is_one_withdrawal(rich_owner, base):
    form = {**withdraw_form(rich_owner, base), "amount": "10"}
    cookies = rich_owner.cookies.get_dict()
    results = []

    def tap():
        with requests.Session() as s:
            s.cookies.update(cookies)
            results.append(s.post(f"{base}/h5/withdraw", data=form, allow_redirects=False).status_code)

    taps = [threading.Thread(target=tap) for _ in range(4)]
    for t in taps:
        t.start()
    for t in taps:
        t.join()
    assert results == [302] * 4
    assert len(fresh(Withdrawal)) == 1
    b = fresh(Balance)[0]
    assert (b.withdrawable_fen, b.reserved_fen) == (1469, 1000)


@pytest.mark.parametrize("amount,message", [
    ("", "请填写正确的金额"), ("abc", "请填写正确的金额"), ("1.234", "最多两位小数"), ("-1", "请填写正确的金额"),
    ("0", "请填写提现金额"), ("0.99", "单笔提现至少 ¥1.00"), ("24.70", "可提现余额不足（¥24.69）"),
    ("1e3", "请填写正确的金额"), ("1,000", "请填写正确的金额"),
])
def test_bad_amounts_are_explained_and_change_nothing(rich_owner, base, amount, message):
    res = rich_owner.post(f"{base}/h5/withdraw", data={**withdraw_form(rich_owner, base), "amount": amount})
    assert res.status_code == 400
    assert message in visible(res.text)
    assert f'value="{html.escape(amount)}"' in res.text  # what was typed is kept
    assert fresh(Withdrawal) == []
    b = fresh(Balance)[0]
    assert (b.withdrawable_fen, b.reserved_fen) == (2469, 0)


def test_a_stale_or_forged_request_key_is_refused(rich_owner, base):
    form = withdraw_form(rich_owner, base)
    res = rich_owner.post(f"{base}/h5/withdraw", data={**form, "request_key": "no", "amount": "5"})
    assert res.status_code == 400 and "请刷新" in visible(res.text) and fresh(Withdrawal) == []


def test_a_withdrawal_without_its_csrf_token_is_refused(rich_owner, base):
    form = withdraw_form(rich_owner, base)
    del form["csrf_token"]
    res = rich_owner.post(f"{base}/h5/withdraw", data={**form, "amount": "5"})
    assert res.status_code == 400 and "页面已过期" in res.text
    assert fresh(Withdrawal) == [] and fresh(Balance)[0].withdrawable_fen == 2469


def test_customers_are_sent_to_apply(person, base):
    browser = person("顾客")
    for path in ("income", "withdraw"):
        res = browser.get(f"{base}/h5/{path}", allow_redirects=False)
        assert res.status_code == 302 and res.headers["Location"].endswith("/h5/apply"), path
    token = csrf(browser.get(f"{base}/h5/apply").text)
    res = browser.post(f"{base}/h5/withdraw", data={"csrf_token": token, "request_key": "a" * 22, "amount": "5"},
                       allow_redirects=False)
    assert res.status_code == 302 and res.headers["Location"].endswith("/h5/apply")
    assert fresh(Withdrawal) == []


def test_strangers_are_sent_to_log_in(base):
    for path in ("income", "withdraw", "notifications"):
        res = requests.get(f"{base}/h5/{path}", allow_redirects=False)
        assert res.status_code == 302 and "/h5/auth/login" in res.headers["Location"], path


def test_someone_elses_transfer_confirmation_is_not_found(rich_owner, person, base):
    w = withdrawals.request_withdrawal(rich_owner.distributor, 500, withdrawals.new_request_key())
    outbox.commit()
    other = person("别人")
    make_distributor("别人", openid=other.openid)
    assert other.get(f"{base}/h5/withdrawals/{w.id}/confirm").status_code == 404
    assert rich_owner.get(f"{base}/h5/withdrawals/424242/confirm").status_code == 404


# -- the notification centre -------------------------------------------------

def every_event(owner, settings, app):
    """Approval (already), a new member, a new order, settlement, one
    withdrawal paid and one rejected."""
    complete(owner.order)
    settle_everything(settings)
    d = owner.distributor
    paid_w = withdrawals.request_withdrawal(d, 1000, withdrawals.new_request_key())
    rejected_w = withdrawals.request_withdrawal(d, 500, withdrawals.new_request_key())
    outbox.commit()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["withdrawals", "pay", str(paid_w.id), "--reference", "银行流水 1"]).exit_code == 0
    assert runner.invoke(args=["withdrawals", "reject", str(rejected_w.id), "--reason", "信息有误"]).exit_code == 0
    db.session.rollback()


TITLES = ["提现未成功", "提现已到账", "佣金可提现", "小店有新订单", "新成员加入", "分销商申请已通过"]


def test_the_centre_lists_every_event_with_an_unread_count(shop_owner, settings, app, base):
    every_event(shop_owner, settings, app)
    page = shop_owner.get(f"{base}/h5/notifications")
    assert page.status_code == 200
    text = visible(page.text)
    assert "6 条未读" in text
    assert [t for t in re.findall("|".join(TITLES), text)] == TITLES  # newest first
    assert f"订单 {shop_owner.order.order_no} 已付款 ¥246.90，预计佣金 ¥24.69（冻结中）" in text
    assert "¥24.69 佣金已过退款期" in text and "¥5.00 已退回可提现余额。原因：信息有误" in text
    assert "顾客 通过你的推广加入了你的团队" in text
    # The income page points at the centre with the same count.
    assert '<span class="weui-badge">6</span>' in shop_owner.get(f"{base}/h5/income").text


def test_opening_one_marks_it_read_and_goes_to_its_page(shop_owner, base):
    page = shop_owner.get(f"{base}/h5/notifications").text
    new_order = fresh(Notification, kind="new_order")[0]
    res = shop_owner.post(f"{base}/h5/notifications/{new_order.id}/open", data={"csrf_token": csrf(page)},
                          allow_redirects=False)
    assert res.status_code == 302 and res.headers["Location"] == f"{base}/h5/income"
    assert fresh(Notification, kind="new_order")[0].read_at is not None
    assert "2 条未读" in visible(shop_owner.get(f"{base}/h5/notifications").text)  # approval and member left
    # Opening it again still goes there and changes nothing.
    again = shop_owner.post(f"{base}/h5/notifications/{new_order.id}/open", data={"csrf_token": csrf(page)},
                            allow_redirects=False)
    assert again.headers["Location"] == f"{base}/h5/income"


def test_mark_all_read_clears_the_count(shop_owner, base):
    page = shop_owner.get(f"{base}/h5/notifications").text
    assert "全部标为已读" in page and "3 条未读" in visible(page)
    res = shop_owner.post(f"{base}/h5/notifications/read", data={"csrf_token": csrf(page)})
    assert res.status_code == 200 and res.url.endswith("/h5/notifications")
    assert "未读" not in visible(res.text) and "全部标为已读" not in res.text
    assert "小店有新订单" in res.text  # still listed, read
    assert '<span class="weui-badge">' not in shop_owner.get(f"{base}/h5/income").text


def test_another_users_notification_is_not_found(shop_owner, person, base):
    mine = fresh(Notification, kind="new_order")[0]
    other = person("别人")
    token = csrf(other.get(f"{base}/h5/apply").text)
    for target in (mine.id, 424242):
        res = other.post(f"{base}/h5/notifications/{target}/open", data={"csrf_token": token},
                         allow_redirects=False)
        assert res.status_code == 404
    assert fresh(Notification, kind="new_order")[0].read_at is None


def test_marking_read_without_a_csrf_token_is_refused(shop_owner, base):
    assert shop_owner.post(f"{base}/h5/notifications/read").status_code == 400
    mine = fresh(Notification, kind="new_order")[0]
    assert shop_owner.post(f"{base}/h5/notifications/{mine.id}/open").status_code == 400
    assert "3 条未读" in visible(shop_owner.get(f"{base}/h5/notifications").text)


def test_a_customer_has_a_notification_centre_too(person, base, app):
    browser = person("顾客")
    page = browser.get(f"{base}/h5/notifications")
    assert page.status_code == 200 and "暂无通知" in page.text and "未读" not in visible(page.text)


def templates_sent(openid: str) -> list[str]:
    db.session.rollback()
    return sorted(m.body["template_id"] for m in db.session.scalars(
        select(SandboxMessage).where(SandboxMessage.openid == openid, SandboxMessage.direction == "template")))


def test_template_messages_reach_a_follower_once_per_event(shop_owner, settings, app, jobs):
    every_event(shop_owner, settings, app)
    jobs.run()
    sent = ["TM_application_approved", "TM_commission_settled", "TM_new_member", "TM_new_order",
            "TM_withdrawal_paid", "TM_withdrawal_rejected"]
    assert templates_sent(shop_owner.openid) == sent
    # Every event again: the gateway retries its notice, the sweep and the
    # settlement job run twice, the handlers are called again.
    order = shop_owner.order
    payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True, order.transaction_id,
                                    order.total_fen))
    outbox.commit()
    settle_everything(settings)
    commissions.settle_order(order.id, at=now() + timedelta(days=30))
    outbox.commit()
    notifications.new_order(order, 2469)
    notifications.new_member(shop_owner.distributor, db.session.get(User, order.buyer_id))
    outbox.commit()
    jobs.run()
    assert templates_sent(shop_owner.openid) == sent
    new_order = next(m for m in db.session.scalars(select(SandboxMessage).where(
        SandboxMessage.body["template_id"].as_string() == "TM_new_order")))
    assert new_order.body["data"]["character_string1"] == {"value": order.order_no}
    assert new_order.body["data"]["amount3"] == {"value": "24.69"}
    assert new_order.body["url"] == f"{settings['app']['base_url']}/h5/income"


def test_no_template_message_for_someone_who_does_not_follow(person, app, jobs):
    browser = person("路人", subscribed=False)
    d = make_distributor("路人", openid=browser.openid)
    paid_order(customer_of(d), {product().id: 1})
    jobs.run()
    assert templates_sent(browser.openid) == []
    kinds = sorted(n.kind for n in fresh(Notification, user_id=d.user_id))
    assert kinds == ["application_approved", "new_member", "new_order"]  # in-app all the same


# -- the bot -----------------------------------------------------------------

def test_my_income_in_the_bot_matches_the_page(rich_owner, base, wechat, settings):
    withdrawals.request_withdrawal(rich_owner.distributor, 469, withdrawals.new_request_key())
    outbox.commit()
    paid_order(customer_of(rich_owner.distributor, "又一位顾客"), {product("茶叶", 5000).id: 1})
    page = figures(rich_owner.get(f"{base}/h5/income").text)
    delivery = wechat.push({**wechat.click(rich_owner.openid, "MY_INCOME"), "CreateTime": next(_clock)})
    assert delivery.status == 200
    text = delivery.reply["Content"]
    for label, bot_label in (("可提现", "可提现"), ("冻结中", "冻结中"), ("提现中", "提现中"), ("已提现", "已提现"),
                             ("累计收入", "累计收入")):
        assert f"{bot_label}：{page[label]}" in text, (label, text)
    assert page == {"可提现": "20.00", "冻结中": "5.00", "提现中": "4.69", "已提现": "0.00", "累计收入": "24.69"}
    assert f'href="{base}/h5/income"' in text


def test_my_income_for_a_customer_explains_and_links_to_apply(person, base, wechat):
    browser = person("顾客")
    delivery = wechat.push({**wechat.click(browser.openid, "MY_INCOME"), "CreateTime": next(_clock)})
    text = delivery.reply["Content"]
    assert "仅对分销商开放" in text and f'href="{base}/h5/apply"' in text


def test_the_figures_always_equal_the_rows(rich_owner, base):
    """What the page shows is what the ledger holds."""
    page = figures(rich_owner.get(f"{base}/h5/income").text)
    d = rich_owner.distributor
    total = int(db.session.scalar(select(func.sum(CommissionRow.amount_fen)).where(  # SUM(BIGINT) is NUMERIC
        CommissionRow.distributor_id == d.id, CommissionRow.state == "withdrawable")))
    assert page["累计收入"] == f"{total // 100}.{total % 100:02d}"


# -- the pages in a phone's browser ------------------------------------------

def test_the_money_pages_fit_a_phone(person, settings, app, base, request):
    """Headless Chromium at 375 px: income, withdraw and the notification
    centre with data in them; nothing wider than the screen. Screenshots go
    to tests/screenshots/income-*.png."""
    from selenium.webdriver.support.ui import WebDriverWait

    from test_browser_buy import shoot

    driver = request.getfixturevalue("driver")
    browser = person("小美的杂货铺")
    d = make_distributor("小美的杂货铺", openid=browser.openid)
    recruit = make_distributor("小美的朋友", referrer=d)
    buyer = customer_of(d, "老顾客")
    tea, box = product("云南普洱茶饼 357g 七子饼 2019 年春茶", 26800), product()
    early = paid_order(buyer, {tea.id: 1, box.id: 3})
    complete(early)
    refunded = paid_order(buyer, {box.id: 1})
    paid_order(customer_of(recruit, "朋友的顾客"), {tea.id: 2})
    settle_everything(settings)
    paid_order(buyer, {tea.id: 1})
    w1 = withdrawals.request_withdrawal(d, 3000, withdrawals.new_request_key())
    w2 = withdrawals.request_withdrawal(d, 1234, withdrawals.new_request_key())
    withdrawals.request_withdrawal(d, 500, withdrawals.new_request_key())
    outbox.commit()
    withdrawals.pay_manually(w1.id, "银行流水 20261125001", actor=audit.SYSTEM)
    withdrawals.reject(w2.id, "收款账户与实名信息不一致，请核对后重新申请", actor=audit.SYSTEM)
    outbox.commit()
    refund(refunded)

    driver.get(f"{base}/healthz")
    for name, value in browser.cookies.get_dict().items():
        driver.add_cookie({"name": name, "value": value, "path": "/"})
    for name, path in (("income-01-income", "income"), ("income-02-withdraw", "withdraw"),
                       ("income-03-notifications", "notifications")):
        driver.get(f"{base}/h5/{path}")
        assert driver.current_url == f"{base}/h5/{path}"
        shoot(driver, name)
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 375, path
    # A refused amount, explained on the page.
    driver.get(f"{base}/h5/withdraw")
    driver.find_element("id", "amount").send_keys("1.234")
    driver.find_element("css selector", "form.weui-form button[type=submit]").click()
    alert = WebDriverWait(driver, 15).until(lambda d: d.find_elements("css selector", "[role=alert]"))
    assert "最多两位小数" in alert[0].text
    shoot(driver, "income-04-withdraw-error")
