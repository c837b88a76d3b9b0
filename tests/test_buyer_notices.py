"""The buyer is told (issue 10, item 7): paid, shipped (carrier and tracking
number), refunded (amount) — an in-app notice and a WeChat template message
for a WeChat buyer, each event once; a guest outside WeChat reads the same on
the order page; an empty template id sends no template message."""
from __future__ import annotations

import re

from sqlalchemy import select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from app.config import build
from handlers import outbox, payments
from handlers.payments import GatewayTrade
from models import Notification, OutboxRow, PayChannel, SandboxMessage, User, db
from test_admin_orders import (customer_of, distributor, fresh, paid, paid_by_wechat, product, refund,
                               refund_form, ship)
from test_shop_pages import browsers, buy, catalogue_items, guest, pay_on_sandbox_alipay  # noqa: F401


def notices(user_id: int) -> list[tuple[str, str]]:
    db.session.rollback()
    return [(n.kind, n.body) for n in db.session.scalars(
        select(Notification).where(Notification.user_id == user_id).order_by(Notification.id))]


def template_rows(prefix: str) -> list[OutboxRow]:
    db.session.rollback()
    return list(db.session.scalars(select(OutboxRow).where(OutboxRow.key.startswith(prefix))
                                   .order_by(OutboxRow.id)))


def test_a_wechat_buyer_is_told_paid_shipped_and_refunded_once_each(app, base, person, staff_browser, jobs):
    browser = person("微信买家")
    buyer = db.session.scalars(select(User).where(User.openid == browser.openid)).one()
    order = paid_by_wechat(base, buyer, {product(5000).id: 2})
    # WeChat Pay sending its notification again (or the buyer's return asking) tells nobody twice.
    again = payments.mark_paid(GatewayTrade(PayChannel.WECHATPAY, order.order_no, True,
                                            fresh(order.order_no).transaction_id, 10000))
    outbox.commit()
    assert again.verdict.value == "duplicate"

    owner = staff_browser("owner")
    assert ship(owner, base, order.order_no, carrier="中通快递", tracking_no="ZT7788990011").status_code == 302
    assert ship(owner, base, order.order_no, carrier="中通快递", tracking_no="ZT7788990011").status_code == 302
    assert refund(owner, base, order.order_no, "25.50", "少一件").status_code == 302
    jobs.run()
    assert fresh(order.order_no).status == "shipped"

    told = notices(buyer.id)
    assert [kind for kind, _ in told] == ["order_paid", "order_shipped", "order_refunded"]
    assert f"订单 {order.order_no}" in told[0][1] and "¥100.00" in told[0][1]
    assert "中通快递" in told[1][1] and "ZT7788990011" in told[1][1]
    assert "已部分退款 ¥25.50" in told[2][1] and "少一件" in told[2][1]
    rows = template_rows(f"template-buyer-{order.id}-") + template_rows("template-buyer-refund-")
    assert sorted(r.args[1] for r in rows) == ["TM_order_paid", "TM_order_refunded", "TM_order_shipped"]
    assert all(r.args[0] == buyer.openid for r in rows)
    assert all(r.args[3].endswith(f"/h5/orders/{order.order_no}") for r in rows)
    # WeChat delivered each template message once (the sandbox platform's record).
    jobs.run()
    db.session.rollback()
    sent = [m.body for m in db.session.scalars(select(SandboxMessage).where(
        SandboxMessage.openid == buyer.openid, SandboxMessage.direction == "template").order_by(SandboxMessage.id))]
    assert [m["template_id"] for m in sent] == ["TM_order_paid", "TM_order_shipped", "TM_order_refunded"]
    assert "ZT7788990011" in str(sent[1]["data"]) and "25.50" in str(sent[2]["data"])
    # The buyer's notification centre shows them.
    page = browser.get(f"{base}/h5/notifications").text
    for words in ("付款成功", "订单已发货", "退款成功", "ZT7788990011"):
        assert words in page, words
    # The order page shows the refund.
    page = browser.get(f"{base}/h5/orders/{order.order_no}").text
    refunds = re.search(r'<div class="weui-cells" id="refunds">(.*?)</div>\s*</div>\s*(?:\{|<div class="weui-cells">)',
                        page, re.S)
    assert refunds and "¥25.50" in refunds.group(1) and "部分退款" in refunds.group(1)
    assert "已退回原支付账户" in page and "ZT7788990011" in page


def test_the_distributors_are_told_when_a_refund_takes_commission_back(app, base, staff_browser, jobs):
    top = distributor("王上级")
    seller = distributor("李小店", referrer=top)
    buyer = customer_of(seller)
    order = paid_by_wechat(base, buyer, {product(10000).id: 1})
    assert refund(staff_browser("finance"), base, order.order_no, "100", "整单退").status_code == 302
    jobs.run()
    assert fresh(order.order_no).status == "refunded"
    for d, amount in ((seller, "10.00"), (top, "5.00")):
        [(kind, body)] = [n for n in notices(d.user_id) if n[0] == "commission_clawed_back"]
        assert body == f"订单 {order.order_no} 退款，扣回佣金 ¥{amount}"
    assert len(template_rows("template-clawback-")) == 2


def test_an_empty_template_id_sends_no_template_message(app, settings, staff_browser, base):
    raw = {section: dict(values) for section, values in settings.items()}
    raw["templates"].update(order_paid="", order_shipped="")
    app.config["SETTINGS"] = build(raw, {}, "tests")
    try:
        buyer = customer_of(nickname="无模板")
        order = paid(buyer, {product().id: 1})
    finally:
        app.config["SETTINGS"] = settings
    assert [kind for kind, _ in notices(buyer.id)] == ["order_paid"]
    assert template_rows(f"template-buyer-{order.id}-") == []


def test_a_guest_outside_wechat_reads_it_on_the_order_page(app, guest, base, settings, catalogue_items,
                                                         staff_browser, jobs):
    order = buy(guest, base, catalogue_items[0], qty="2")
    back = pay_on_sandbox_alipay(guest, base, settings, order.order_no)
    assert "待发货" in back.text
    owner = staff_browser("owner")
    assert ship(owner, base, order.order_no, carrier="京东物流", tracking_no="JD0012345678").status_code == 302
    key = refund_form(owner, base, order.order_no)
    assert refund(owner, base, order.order_no, "68.00", "破损补偿", key=key).status_code == 302
    jobs.run()

    page = guest.get(f"{base}/h5/orders/{order.order_no}").text
    for words in ("待收货", "京东物流", "JD0012345678", "¥68.00", "部分退款", "破损补偿", "已退回原支付账户"):
        assert words in page, words
    # Nobody to notify: a guest has no account.
    db.session.rollback()
    assert db.session.scalars(select(Notification).where(Notification.kind.like("order_%"))).all() == []
    # A refund still with the gateway says so.
    assert refund(owner, base, order.order_no, "1.00", "再补一点").status_code == 302
    page = guest.get(f"{base}/h5/orders/{order.order_no}").text
    assert "¥1.00" in page
    assert ("退款处理中" in page) or (page.count("已退回原支付账户") == 2)  # without Redis the job ran inline
