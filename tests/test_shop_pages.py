"""The H5 shop walked over real HTTP against the live server: the unit's
shop, product page, cart, checkout, paying (Alipay outside WeChat, WeChat
Pay inside), my orders, and the distributor's unit orders and selection.
WeChat users log in through the sandbox's OAuth; guests are plain browsers.
Payments go through the sandbox gateways, once pay/ has them."""
from __future__ import annotations

import re
import threading
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from sqlalchemy import func, select
from werkzeug.serving import make_server

from distribution_helpers import make_distributor
from conftest import needs_postgres
from handlers.audit import SYSTEM
from handlers import audit, catalogue, orders, outbox, payments, referrals, units
from handlers.payments import GatewayTrade
from models import Order, PayChannel, Product, UnitProduct, User, db
from test_h5_auth import log_in

# SQLite takes no row locks and refuses a second writer whose snapshot is
# stale ("database is locked"): races are the PostgreSQL run's to prove.

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
WECHAT = PHONE.replace("Safari/604.1", "MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN")
RECEIVER = {"name": "李雷", "mobile": "13912345678", "address": "浙江省杭州市西湖区文三路 100 号 2 单元 301"}


# -- fixtures and helpers ---------------------------------------------------------

@pytest.fixture
def catalogue_items(app):
    """Three products on sale and one taken off sale."""
    made = [catalogue.add_product("山茶花洗护礼盒", 16800, 10, "山茶花籽油洗发露 400ml + 护发素 400ml。",
                                  ["/h5/static/products/camellia.png"]),
            catalogue.add_product("云南小粒咖啡豆 500g", 8900, 5, "中度烘焙，坚果与焦糖风味。",
                                  ["/h5/static/products/coffee.png", "/h5/static/products/cup.png"]),
            catalogue.add_product("竹纤维洗碗布（10 片）", 1990, 2, "不沾油，快干。", []),
            catalogue.add_product("旧款红枣", 5900, 50, "", [], on_sale=False)]
    outbox.commit()
    return made


@pytest.fixture
def browsers():
    opened = []

    def make(user_agent: str = PHONE) -> requests.Session:
        s = requests.Session()
        s.headers["User-Agent"] = user_agent
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def guest(browsers) -> requests.Session:
    """A phone's browser outside WeChat: nobody logs in."""
    return browsers()


@pytest.fixture
def person(browsers, sandbox_user, base):
    """A WeChat user logged in to the H5 pages (``wechat=True``: in WeChat's browser)."""

    def make(nickname: str, wechat: bool = False, distributor_of=None, distributor: bool = False):
        who = sandbox_user(nickname)
        if distributor or distributor_of is not None:
            make_distributor(nickname, referrer=distributor_of, openid=who.openid)
        browser = browsers(WECHAT if wechat else PHONE)
        assert log_in(browser, base, who.openid).status_code == 302
        browser.openid = who.openid
        return browser

    return make


def csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _any_form(browser, base) -> str:
    product = db.session.scalars(select(Product).where(Product.on_sale.is_(True), Product.stock > 0)).first()
    return browser.get(f"{base}/h5/p/{product.id}").text


def add(browser, base, product_id, qty="1", **extra) -> requests.Response:
    token = csrf(_any_form(browser, base))
    return browser.post(f"{base}/h5/cart/add", data={"csrf_token": token, "product_id": product_id, "qty": qty,
                                                      **extra}, allow_redirects=False)


def checkout_form(browser, base) -> dict[str, str]:
    """The hidden fields of the checkout form as shown now (with an empty
    cart there is none: any page's CSRF token and a key never used)."""
    page = browser.get(f"{base}/h5/checkout", allow_redirects=False)
    if page.status_code != 200:
        return {"csrf_token": csrf(_any_form(browser, base)), "checkout_key": orders.new_checkout_key()}
    return {"csrf_token": csrf(page.text),
            "checkout_key": re.search(r'name="checkout_key" value="([^"]+)"', page.text).group(1)}


def checkout(browser, base, form: dict[str, str] | None = None, **fields) -> requests.Response:
    return browser.post(f"{base}/h5/checkout", data={**(form or checkout_form(browser, base)), **RECEIVER, **fields},
                        allow_redirects=False)


def placed(res: requests.Response) -> Order:
    """The order a successful checkout made (it sends the buyer to pay)."""
    assert res.status_code == 302, res.text
    match = re.fullmatch(r".*/h5/orders/([0-9]{20})/pay", res.headers["Location"])
    assert match, res.headers["Location"]
    return fresh(match.group(1))


def fresh(order_no: str) -> Order:
    db.session.rollback()
    return db.session.scalars(select(Order).where(Order.order_no == order_no)).one()


def stock(product: Product) -> int:
    db.session.rollback()
    return db.session.get(Product, product.id).stock


def order_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Order))


def user_of(browser) -> User:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == browser.openid)).one()


def cart_quantities(browser, base) -> dict[str, str]:
    return dict(re.findall(r'data-qty="(\d+)">(\d+)<', browser.get(f"{base}/h5/cart").text))


def buy(browser, base, product, qty="1", **fields) -> Order:
    assert add(browser, base, product.id, qty).status_code == 302
    return placed(checkout(browser, base, **fields))


def mark_paid_by_gateway(order: Order) -> None:
    """What a verified notification does (used where the payment itself is not under test)."""
    outcome = payments.mark_paid(GatewayTrade(PayChannel.ALIPAY, order.order_no, True, f"T{order.order_no}",
                                              order.total_fen))
    assert outcome.ok
    outbox.commit()


def pay_on_sandbox_alipay(browser, base, settings, order_no: str) -> requests.Response:
    """Pay page → the sandbox Alipay cashier → 确认付款 → back to the shop."""
    res = browser.get(f"{base}/h5/orders/{order_no}/pay", allow_redirects=False)
    assert res.status_code == 302, res.text
    assert res.headers["Location"].startswith(settings["alipay"]["gateway"] + "?")
    cashier = browser.get(res.headers["Location"])
    assert cashier.status_code == 200 and order_no in cashier.text, cashier.text
    action = re.search(r'<form method="post" action="([^"]+/pay)"', cashier.text).group(1)
    done = browser.post(urljoin(cashier.url, action))
    if f"/h5/orders/{order_no}" not in done.url:  # the notification was not answered: go back by hand
        back = re.search(r'id="back" href="([^"]+)"', done.text).group(1).replace("&amp;", "&")
        done = browser.get(back)
    return done


# -- the unit's shop --------------------------------------------------------------

def test_the_unit_link_is_the_distributors_shop(app, guest, base, catalogue_items, sandbox_user):
    who = sandbox_user("阿花")
    d = make_distributor("阿花", openid=who.openid)
    db.session.get(User, d.user_id).avatar_url = "http://127.0.0.1/avatar.png"
    db.session.commit()

    page = guest.get(f"{base}/h5/u/{d.unit.slug}")

    assert page.status_code == 200
    assert f"<title>{d.unit.name}</title>" in page.text
    assert f'<meta property="og:title" content="{d.unit.name}">' in page.text
    assert "window.fxShare" in page.text and f"/h5/u/{d.unit.slug}" in page.text
    assert "阿花 为你推荐" in page.text and 'src="http://127.0.0.1/avatar.png"' in page.text
    for name, price in (("山茶花洗护礼盒", "¥168.00"), ("云南小粒咖啡豆 500g", "¥89.00"), ("竹纤维洗碗布（10 片）", "¥19.90")):
        assert name in page.text and price in page.text
    assert "旧款红枣" not in page.text  # off sale

    # The distributor picks a subset: only that is shown.
    catalogue.choose_products(d.unit, [catalogue_items[1].id])
    outbox.commit()
    page = guest.get(f"{base}/h5/u/{d.unit.slug}").text
    assert "云南小粒咖啡豆" in page and "山茶花洗护礼盒" not in page


def test_shop_menu_shows_the_shop_where_the_buyer_counts(app, person, guest, base, catalogue_items):
    owner = person("店主", distributor=True)
    unit = referrals.distributor_of(user_of(owner).id).unit
    assert unit.name in owner.get(f"{base}/h5/shop").text
    customer = person("顾客")
    customer.get(f"{base}/h5/u/{unit.slug}")
    assert unit.name in customer.get(f"{base}/h5/shop").text
    assert units.merchant_unit().name in person("路人").get(f"{base}/h5/shop").text
    assert units.merchant_unit().name in guest.get(f"{base}/h5/shop").text  # no link opened yet
    guest.get(f"{base}/h5/u/{unit.slug}")
    assert unit.name in guest.get(f"{base}/h5/shop").text


def test_inside_wechat_the_shop_logs_in_and_outside_a_guest_browses(browsers, base, catalogue_items):
    in_wechat = browsers(WECHAT).get(f"{base}/h5/shop", allow_redirects=False)
    assert in_wechat.status_code == 302 and urlsplit(in_wechat.headers["Location"]).path == "/h5/auth/login"
    outside = browsers(PHONE).get(f"{base}/h5/shop", allow_redirects=False)
    assert outside.status_code == 200 and "山茶花洗护礼盒" in outside.text
    # Distributor pages still need WeChat.
    assert browsers(PHONE).get(f"{base}/h5/unit-orders", allow_redirects=False).status_code == 302


def test_product_page(guest, base, catalogue_items):
    coffee = catalogue_items[1]
    page = guest.get(f"{base}/h5/p/{coffee.id}")
    assert page.status_code == 200
    for text in ("云南小粒咖啡豆 500g", "¥89.00", "库存 5 件", "坚果与焦糖风味", "加入购物车",
                 "/h5/static/products/coffee.png", "/h5/static/products/cup.png", 'name="csrf_token"'):
        assert text in page.text
    assert guest.get(f"{base}/h5/p/999999").status_code == 404
    off = guest.get(f"{base}/h5/p/{catalogue_items[3].id}")
    assert off.status_code == 404 and "已下架" in off.text and "加入购物车" not in off.text


# -- the cart ---------------------------------------------------------------------

def test_cart_add_change_and_remove(guest, base, catalogue_items):
    gift, coffee = catalogue_items[0], catalogue_items[1]
    assert "购物车是空的" in guest.get(f"{base}/h5/cart").text
    assert add(guest, base, gift.id, "2").headers["Location"].endswith("/h5/cart")
    add(guest, base, coffee.id, "1")
    add(guest, base, gift.id, "1")  # adds to the line
    cart = guest.get(f"{base}/h5/cart").text
    assert cart_quantities(guest, base) == {str(gift.id): "3", str(coffee.id): "1"}
    assert "¥593.00" in cart  # 3 × 168.00 + 89.00, from the catalogue

    token = csrf(cart)
    guest.post(f"{base}/h5/cart/update", data={"csrf_token": token, "product_id": gift.id, "qty": "1"})
    assert cart_quantities(guest, base)[str(gift.id)] == "1"
    guest.post(f"{base}/h5/cart/update", data={"csrf_token": token, "product_id": gift.id, "qty": "0"})
    assert cart_quantities(guest, base) == {str(coffee.id): "1"}
    guest.post(f"{base}/h5/cart/remove", data={"csrf_token": token, "product_id": coffee.id})
    assert cart_quantities(guest, base) == {}


@pytest.mark.parametrize("qty", ["0", "-1", "10000", "abc", "", "1.5"])
def test_bad_quantities_are_refused_on_the_page(guest, base, catalogue_items, qty):
    res = add(guest, base, catalogue_items[0].id, qty)
    assert res.status_code == 400 and ("每种商品一次可买 1-99 件" in res.text or "请填写购买数量" in res.text)
    assert f'value="{qty}"' in res.text  # what was typed is kept
    assert cart_quantities(guest, base) == {}
    add(guest, base, catalogue_items[0].id, "1")
    res = guest.post(f"{base}/h5/cart/update", data={"csrf_token": csrf(_any_form(guest, base)),
                                                     "product_id": catalogue_items[0].id, "qty": qty or "x"})
    if qty != "0":
        assert res.status_code == 400 and ("每种商品一次可买 1-99 件" in res.text or "请填写购买数量" in res.text)
        assert cart_quantities(guest, base) == {str(catalogue_items[0].id): "1"}


def test_more_than_the_stock_or_an_unknown_or_off_sale_product_is_refused(guest, base, catalogue_items):
    cloth = catalogue_items[2]  # 2 in stock
    res = add(guest, base, cloth.id, "3")
    assert res.status_code == 400 and "库存不足，仅剩 2 件" in res.text
    assert add(guest, base, 999999, "1").status_code == 404
    assert add(guest, base, "x1", "1").status_code == 400
    off = add(guest, base, catalogue_items[3].id, "1")
    assert off.status_code == 404 and "已下架" in off.text
    assert cart_quantities(guest, base) == {}


def test_forms_without_their_csrf_token_are_refused(guest, base, catalogue_items):
    res = guest.post(f"{base}/h5/cart/add", data={"product_id": catalogue_items[0].id, "qty": "1"})
    assert res.status_code == 400 and "页面已过期" in res.text
    add(guest, base, catalogue_items[0].id, "1")
    res = guest.post(f"{base}/h5/checkout", data=RECEIVER)
    assert res.status_code == 400 and "页面已过期" in res.text
    assert order_count() == 0


# -- checkout ---------------------------------------------------------------------

def test_guest_checkout_through_a_unit_link_counts_in_that_unit(app, guest, base, catalogue_items):
    level1 = make_distributor("一级")
    level2 = make_distributor("二级", referrer=level1)
    other = make_distributor("别家")
    gift = catalogue_items[0]
    guest.get(f"{base}/h5/u/{level2.unit.slug}")
    guest.get(f"{base}/h5/u/{other.unit.slug}")  # the first link opened is kept

    assert add(guest, base, gift.id, "2").status_code == 302
    page = guest.get(f"{base}/h5/checkout")
    assert page.status_code == 200 and "¥336.00" in page.text and "收货人" in page.text
    # A price, an amount or a unit in the form changes nothing: the server decides.
    order = placed(checkout(guest, base, price_fen="1", total_fen="1", amount="0.01",
                            unit_id=str(other.unit.id), distributor_id=str(other.id), note="请周末送"))

    assert order.total_fen == order.goods_fen == 2 * 16800
    assert [(line.name, line.unit_price_fen, line.quantity) for line in order.lines] == [("山茶花洗护礼盒", 16800, 2)]
    assert (order.unit_id, order.distributor_id, order.parent_distributor_id) == (level2.unit.id, level2.id,
                                                                                   level1.id)
    assert order.buyer_id is None and order.guest_mobile == "13912345678"
    assert (order.receiver_name, order.note, order.status) == ("李雷", "请周末送", "pending")
    assert stock(gift) == 8
    assert cart_quantities(guest, base) == {}  # the cart was bought

    mine = guest.get(f"{base}/h5/orders")
    assert order.order_no in mine.text and "待付款" in mine.text and "¥336.00" in mine.text
    detail = guest.get(f"{base}/h5/orders/{order.order_no}")
    assert detail.status_code == 200 and "浙江省杭州市西湖区" in detail.text and "去付款" in detail.text
    # Next time the receiver is filled in.
    add(guest, base, gift.id, "1")
    assert "文三路 100 号" in guest.get(f"{base}/h5/checkout").text


def test_a_guest_without_a_unit_link_buys_in_the_merchants_unit(guest, base, catalogue_items):
    order = buy(guest, base, catalogue_items[1])
    assert (order.unit_id, order.distributor_id, order.parent_distributor_id) == (units.merchant_unit().id, None,
                                                                                   None)


def test_where_the_sale_counts_for_each_wechat_buyer(app, person, base, catalogue_items):
    coffee = catalogue_items[1]
    owner = person("一级店主", distributor=True)
    level1 = referrals.distributor_of(user_of(owner).id)
    recruit = person("二级店主", distributor_of=level1)
    level2 = referrals.distributor_of(user_of(recruit).id)
    customer = person("老顾客")
    customer.get(f"{base}/h5/u/{level2.unit.slug}")  # owned by level 2 for good
    organic = person("自然流量")

    cases = [(owner, level1.unit.id, level1.id, None), (recruit, level2.unit.id, level2.id, level1.id),
             (customer, level2.unit.id, level2.id, level1.id), (organic, units.merchant_unit().id, None, None)]
    for browser, unit_id, distributor_id, parent_id in cases:
        order = buy(browser, base, coffee)
        assert (order.unit_id, order.distributor_id, order.parent_distributor_id) == (unit_id, distributor_id,
                                                                                       parent_id)
        assert order.buyer_id == user_of(browser).id and order.guest_mobile is None
    # A customer opening another distributor's link still buys in their owner's unit.
    customer.get(f"{base}/h5/u/{level1.unit.slug}")
    assert buy(customer, base, coffee).unit_id == level2.unit.id


def test_wechat_users_get_their_last_address(person, base, catalogue_items):
    buyer = person("回头客")
    add(buyer, base, catalogue_items[0].id)
    assert 'value="李雷"' not in buyer.get(f"{base}/h5/checkout").text
    buy(buyer, base, catalogue_items[0], mobile="139-1234-5678")
    add(buyer, base, catalogue_items[0].id)
    page = buyer.get(f"{base}/h5/checkout").text
    assert 'value="李雷"' in page and 'value="13912345678"' in page and "文三路 100 号" in page


@pytest.mark.parametrize("fields,message", [
    ({"mobile": "1234"}, "手机号"), ({"mobile": "23912345678"}, "手机号"), ({"name": ""}, "收货人姓名"),
    ({"address": "杭州"}, "详细的收货地址"),
])
def test_bad_receivers_are_explained_and_keep_what_was_typed(guest, base, catalogue_items, fields, message):
    add(guest, base, catalogue_items[0].id)
    res = checkout(guest, base, note="放门口", **fields)
    assert res.status_code == 400 and message in res.text
    typed = {**RECEIVER, **fields}
    for key in ("name", "mobile"):
        assert f'value="{typed[key]}"' in res.text
    assert typed["address"] in res.text and 'value="放门口"' in res.text
    assert order_count() == 0 and stock(catalogue_items[0]) == 10
    assert cart_quantities(guest, base) == {str(catalogue_items[0].id): "1"}  # nothing lost


def test_an_empty_cart_cannot_be_checked_out(guest, base, catalogue_items):
    assert guest.get(f"{base}/h5/checkout", allow_redirects=False).headers["Location"].endswith("/h5/cart")
    res = checkout(guest, base)
    assert res.status_code == 400 and "购物车是空的" in res.text
    assert order_count() == 0


def test_stock_gone_or_product_withdrawn_since_adding_is_explained(guest, base, catalogue_items):
    coffee, gift = catalogue_items[1], catalogue_items[0]
    add(guest, base, coffee.id, "3")
    add(guest, base, gift.id, "1")
    catalogue.update_product(coffee.id, stock=2, actor=audit.SYSTEM)
    outbox.commit()
    assert "库存不足，仅剩 2 件" in guest.get(f"{base}/h5/cart").text
    res = checkout(guest, base)
    assert res.status_code == 409 and "库存不足，仅剩 2 件" in res.text
    assert order_count() == 0 and stock(gift) == 10  # the gift's stock was not taken either
    catalogue.update_product(coffee.id, on_sale=False, actor=audit.SYSTEM)
    outbox.commit()
    assert "已下架" in guest.get(f"{base}/h5/cart").text
    res = checkout(guest, base)
    assert res.status_code == 400 and "已下架" in res.text and order_count() == 0


def test_a_cart_tampered_in_the_form_is_not_what_is_bought(guest, base, catalogue_items):
    add(guest, base, catalogue_items[2].id, "1")
    order = placed(checkout(guest, base, product_id=str(catalogue_items[0].id), qty="50",
                            **{f"items[{catalogue_items[0].id}]": "50"}))
    assert [(line.product_id, line.quantity) for line in order.lines] == [(catalogue_items[2].id, 1)]
    assert order.total_fen == 1990


@needs_postgres
def test_concurrent_checkouts_of_the_last_items_never_oversell(browsers, base, catalogue_items):
    cloth = catalogue_items[2]  # 2 left
    buyers = [browsers() for _ in range(6)]
    for i, b in enumerate(buyers):
        assert add(b, base, cloth.id, "1").status_code == 302
    forms = [checkout_form(b, base) for b in buyers]
    results: list[requests.Response] = [None] * len(buyers)
    start = threading.Barrier(len(buyers))

    def go(i: int) -> None:
        start.wait()
        results[i] = buyers[i].post(f"{base}/h5/checkout", data={**forms[i], **RECEIVER,
                                                                 "mobile": f"1391234560{i}"},
                                    allow_redirects=False)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(buyers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results)
    assert codes.count(302) == 2 and all(c == 409 for c in codes if c != 302), codes
    assert all("库存不足" in r.text for r in results if r.status_code == 409)
    assert order_count() == 2 and stock(cloth) == 0


# -- one order per checkout, and a limit on unpaid ones ---------------------------

def test_a_checkout_submitted_twice_makes_one_order(guest, person, base, catalogue_items):
    """A double tap, or the browser's resubmit after a slow answer: the
    same form is one order, and its stock is taken once."""
    coffee = catalogue_items[1]
    for browser in (guest, person("双击")):
        assert add(browser, base, coffee.id, "2").status_code == 302
        form = checkout_form(browser, base)
        first = placed(checkout(browser, base, form))
        again = checkout(browser, base, form)  # the cart is empty by now: the key still finds the order
        assert again.status_code == 302 and again.headers["Location"] == first_location(first)
        assert browser.get(f"{base}/h5/orders/{first.order_no}").status_code == 200
    assert order_count() == 2 and stock(coffee) == 1


def first_location(order: Order) -> str:
    return f"/h5/orders/{order.order_no}/pay"


def test_a_checkout_without_its_one_time_key_is_refused(guest, base, catalogue_items):
    add(guest, base, catalogue_items[0].id, "1")
    form = checkout_form(guest, base)
    for key in ("", "short", "with spaces and more than sixteen", "键" * 20, "x" * 65):
        res = checkout(guest, base, {**form, "checkout_key": key})
        assert res.status_code == 400 and "页面已过期" in res.text, key
    res = checkout(guest, base, {"csrf_token": form["csrf_token"]})
    assert res.status_code == 400 and "页面已过期" in res.text
    assert order_count() == 0 and stock(catalogue_items[0]) == 10
    assert 'name="checkout_key" value="' in res.text  # the form shown again can be sent
    placed(checkout(guest, base))


@needs_postgres
def test_one_checkout_submitted_at_once_many_times_is_one_order(browsers, base, catalogue_items):
    coffee = catalogue_items[1]
    buyer = browsers()
    add(buyer, base, coffee.id, "2")
    form = checkout_form(buyer, base)
    start, results = threading.Barrier(5), []

    def go() -> None:
        start.wait()
        results.append(checkout(buyer, base, form))

    threads = [threading.Thread(target=go) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [302] * 5, [r.text for r in results if r.status_code != 302]
    assert len({r.headers["Location"] for r in results}) == 1
    assert order_count() == 1 and stock(coffee) == 3


def test_a_fourth_unpaid_order_is_refused(guest, person, base, catalogue_items):
    gift = catalogue_items[0]
    for browser in (guest, person("囤货")):
        made = [buy(browser, base, gift) for _ in range(orders.MAX_UNPAID)]
        add(browser, base, gift.id, "1")
        res = checkout(browser, base)
        assert res.status_code == 409 and "3 笔订单还未付款" in res.text and "自动取消" in res.text
        token = csrf(browser.get(f"{base}/h5/orders/{made[0].order_no}").text)
        browser.post(f"{base}/h5/orders/{made[0].order_no}/cancel", data={"csrf_token": token})
        placed(checkout(browser, base))  # one cancelled: room for one more
    assert order_count() == 8 and stock(gift) == 10 - 6


@needs_postgres
def test_checkouts_at_once_never_pass_the_unpaid_limit(browsers, base, catalogue_items):
    """Six tabs of one guest (one mobile number), each with its own form,
    submitted at once: three orders, the others refused."""
    gift = catalogue_items[0]
    tabs = [browsers() for _ in range(6)]
    for b in tabs:
        add(b, base, gift.id, "1")
    forms = [checkout_form(b, base) for b in tabs]
    start, codes = threading.Barrier(len(tabs)), []

    def go(i: int) -> None:
        start.wait()
        codes.append(checkout(tabs[i], base, forms[i]).status_code)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(tabs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [302] * 3 + [409] * 3, codes
    assert order_count() == 3 and stock(gift) == 7


# -- my orders --------------------------------------------------------------------

def test_someone_elses_order_is_not_found(person, guest, browsers, base, catalogue_items):
    alice, bob = person("爱丽丝"), person("鲍勃")
    order = buy(alice, base, catalogue_items[0])
    token = csrf(_any_form(bob, base))
    for path in ("", "/pay", "/return"):
        assert bob.get(f"{base}/h5/orders/{order.order_no}{path}", allow_redirects=False).status_code == 404
    for action in ("cancel", "confirm"):
        res = bob.post(f"{base}/h5/orders/{order.order_no}/{action}", data={"csrf_token": token})
        assert res.status_code == 404
    assert order.order_no not in bob.get(f"{base}/h5/orders").text
    assert fresh(order.order_no).status == "pending"
    for bad in ("123", "x" * 20, "../../etc/passwd", "0" * 20):
        assert alice.get(f"{base}/h5/orders/{bad}").status_code == 404

    # A guest's orders: not even another browser that gives the same mobile number sees them.
    first = buy(guest, base, catalogue_items[1])
    copycat = browsers()
    buy(copycat, base, catalogue_items[1])
    assert copycat.get(f"{base}/h5/orders/{first.order_no}").status_code == 404
    assert first.order_no not in copycat.get(f"{base}/h5/orders").text
    assert guest.get(f"{base}/h5/orders/{first.order_no}").status_code == 200
    assert browsers().get(f"{base}/h5/orders/{first.order_no}").status_code == 404  # a stranger


def test_the_buyer_cancels_and_the_stock_comes_back(person, base, catalogue_items):
    buyer = person("反悔")
    coffee = catalogue_items[1]
    order = buy(buyer, base, coffee, qty="3")
    assert stock(coffee) == 2
    page = buyer.get(f"{base}/h5/orders/{order.order_no}").text
    res = buyer.post(f"{base}/h5/orders/{order.order_no}/cancel", data={"csrf_token": csrf(page)})
    assert res.status_code == 200 and "已取消" in res.text and "买家取消" in res.text and "去付款" not in res.text
    assert fresh(order.order_no).status == "cancelled" and stock(coffee) == 5
    again = buyer.post(f"{base}/h5/orders/{order.order_no}/cancel", data={"csrf_token": csrf(page)})
    assert again.status_code == 409 and "不能这样操作" in again.text and stock(coffee) == 5
    assert buyer.get(f"{base}/h5/orders/{order.order_no}/pay", allow_redirects=False).status_code == 302


@needs_postgres
def test_a_double_tapped_cancel_returns_the_stock_once(person, base, catalogue_items):
    buyer = person("手快")
    coffee = catalogue_items[1]
    order = buy(buyer, base, coffee, qty="2")
    token = csrf(buyer.get(f"{base}/h5/orders/{order.order_no}").text)
    start = threading.Barrier(4)
    codes = []

    def tap():
        start.wait()
        codes.append(buyer.post(f"{base}/h5/orders/{order.order_no}/cancel", data={"csrf_token": token},
                                allow_redirects=False).status_code)

    threads = [threading.Thread(target=tap) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [302, 409, 409, 409], codes
    assert stock(coffee) == 5


def test_an_overdue_unpaid_order_is_cancelled_when_shown(person, base, catalogue_items, settings):
    from datetime import timedelta

    buyer = person("拖延")
    order = buy(buyer, base, catalogue_items[1])
    row = fresh(order.order_no)
    row.expires_at = row.created_at - timedelta(minutes=1)
    db.session.commit()
    page = buyer.get(f"{base}/h5/orders/{order.order_no}").text
    assert "已取消" in page and "超时未付款" in page and stock(catalogue_items[1]) == 5


def test_shipping_shows_the_carrier_and_the_buyer_confirms_receipt(app, person, base, catalogue_items):
    buyer = person("收货人")
    order = buy(buyer, base, catalogue_items[0])
    mark_paid_by_gateway(fresh(order.order_no))
    assert "待发货" in buyer.get(f"{base}/h5/orders/{order.order_no}").text
    out = app.test_cli_runner().invoke(args=["orders", "ship", order.order_no, "--carrier", "顺丰速运",
                                             "--tracking-no", "SF1234567890"])
    assert out.exit_code == 0, out.output
    page = buyer.get(f"{base}/h5/orders/{order.order_no}").text
    assert "待收货" in page and "顺丰速运" in page and "SF1234567890" in page and "确认收货" in page
    res = buyer.post(f"{base}/h5/orders/{order.order_no}/confirm", data={"csrf_token": csrf(page)})
    assert res.status_code == 200 and "已完成" in res.text and "确认收货" not in res.text
    assert fresh(order.order_no).status == "completed"
    again = buyer.post(f"{base}/h5/orders/{order.order_no}/confirm", data={"csrf_token": csrf(page)})
    assert again.status_code == 409


def test_my_orders_by_state(app, person, base, catalogue_items):
    buyer = person("老主顾")
    pending = buy(buyer, base, catalogue_items[1])
    paid = buy(buyer, base, catalogue_items[1])
    mark_paid_by_gateway(fresh(paid.order_no))
    shipped = buy(buyer, base, catalogue_items[1])
    mark_paid_by_gateway(fresh(shipped.order_no))
    orders.ship_order(shipped.order_no, "中通快递", "ZT20240001", actor=SYSTEM)
    outbox.commit()
    done = buy(buyer, base, catalogue_items[0])
    mark_paid_by_gateway(fresh(done.order_no))
    orders.ship_order(done.order_no, "中通快递", "ZT20240002", actor=SYSTEM)
    orders.confirm_receipt(done.order_no)
    outbox.commit()
    refunding = buy(buyer, base, catalogue_items[0])
    mark_paid_by_gateway(fresh(refunding.order_no))
    fresh(refunding.order_no).status = "refunding"  # the merchant asked; the gateway has not answered
    db.session.commit()
    cancelled = buy(buyer, base, catalogue_items[0])
    orders.cancel_order(cancelled.order_no, "买家取消")
    outbox.commit()

    def listed(tab: str | None) -> set[str]:
        text = buyer.get(f"{base}/h5/orders", params={"tab": tab} if tab else None).text
        return set(re.findall(r'data-order="([0-9]{20})"', text))

    everything = {o.order_no for o in (pending, paid, shipped, done, refunding, cancelled)}
    assert listed(None) == everything == listed("nonsense")
    assert listed("pending") == {pending.order_no}
    assert listed("paid") == {paid.order_no}
    assert listed("shipped") == {shipped.order_no}
    assert listed("completed") == {done.order_no}
    assert listed("refund") == {refunding.order_no}
    assert person("新人").get(f"{base}/h5/orders").text.count('data-order="') == 0


# -- paying -----------------------------------------------------------------------

def test_a_guest_pays_with_alipay_and_the_order_is_paid(guest, base, settings, catalogue_items):
    d = make_distributor("店长")
    guest.get(f"{base}/h5/u/{d.unit.slug}")
    order = buy(guest, base, catalogue_items[0], qty="2")

    back = pay_on_sandbox_alipay(guest, base, settings, order.order_no)

    assert back.status_code == 200 and back.url == f"{base}/h5/orders/{order.order_no}"
    assert "待发货" in back.text and "支付宝" in back.text
    paid = fresh(order.order_no)
    assert (paid.status, paid.pay_channel, paid.unit_id) == ("paid", "alipay", d.unit.id)
    # Paid: the pay page leads to the order.
    again = guest.get(f"{base}/h5/orders/{order.order_no}/pay", allow_redirects=False)
    assert again.status_code == 302 and again.headers["Location"].endswith(f"/h5/orders/{order.order_no}")


def test_coming_back_without_paying_leaves_the_order_unpaid(guest, base, settings, catalogue_items):
    order = buy(guest, base, catalogue_items[0])
    res = guest.get(f"{base}/h5/orders/{order.order_no}/pay", allow_redirects=False)
    guest.get(res.headers["Location"])  # the cashier, left without paying
    # Forged "paid" return parameters prove nothing: the server asks the gateway.
    back = guest.get(f"{base}/h5/orders/{order.order_no}/return/alipay",
                     params={"trade_status": "TRADE_SUCCESS", "total_amount": "168.00", "sign": "forged"})
    assert back.url.endswith(f"/h5/orders/{order.order_no}") and "待付款" in back.text
    assert fresh(order.order_no).status == "pending"
    assert guest.get(f"{base}/h5/orders/{order.order_no}/return/bitcoin").status_code == 200


def test_inside_wechat_the_pay_page_is_wechat_pay(person, base, settings, catalogue_items):
    buyer = person("微信用户", wechat=True)
    order = buy(buyer, base, catalogue_items[1])
    page = buyer.get(f"{base}/h5/orders/{order.order_no}/pay")
    assert page.status_code == 200 and "微信支付 ¥89.00" in page.text
    if settings["wechatpay"]["sandbox"]:
        cashier = re.search(r'id="pay-button" href="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        assert cashier.startswith(base + "/sandbox/pay/wechatpay")
    else:
        assert "getBrandWCPayRequest" in page.text and "prepay_id=" in page.text


@pytest.fixture
def shop_without_wechatpay(live):
    """A second server on the same database, whose account has no WeChat Pay."""
    from conftest import free_port, make_raw_config

    from app import create_app
    from app.config import build

    port = free_port()
    raw = make_raw_config(f"http://127.0.0.1:{port}", live.config["SETTINGS"]["app"]["database_url"],
                          wechatpay={"mchid": ""})
    other = create_app(build(raw, {}, "tests"))
    server = make_server("127.0.0.1", port, other, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()
    with other.app_context():
        db.engine.dispose()


def test_without_wechat_pay_wechat_users_are_shown_how_to_pay_in_the_browser(app, browsers, base,
                                                                            shop_without_wechatpay, catalogue_items,
                                                                            sandbox_user, settings):
    there = shop_without_wechatpay
    who = sandbox_user("没开通")
    phone = browsers(WECHAT)
    assert log_in(phone, there, who.openid).status_code == 302
    order = buy(phone, there, catalogue_items[0])
    guide = phone.get(f"{there}/h5/orders/{order.order_no}/pay")
    assert guide.status_code == 200 and "在浏览器打开" in guide.text and "¥168.00" in guide.text
    link = re.search(r'class="weui-msg__desc fx-link">([^<]+)<', guide.text).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(link).query)["t"]

    # The phone's browser is nobody: the link pays this order and shows nothing else.
    browser = browsers(PHONE)
    assert browser.get(f"{there}/h5/orders/{order.order_no}").status_code == 404
    forged = link[:-3] + ("abc" if not link.endswith("abc") else "xyz")
    assert browser.get(forged, allow_redirects=False).status_code == 404
    other = buy(browsers(PHONE), there, catalogue_items[1])
    stolen = link.replace(order.order_no, other.order_no)
    assert browser.get(stolen, allow_redirects=False).status_code == 404
    res = browser.get(link, allow_redirects=False)
    assert res.status_code == 302 and "alipay" in res.headers["Location"]
    cashier = browser.get(res.headers["Location"])
    action = re.search(r'<form method="post" action="([^"]+/pay)"', cashier.text).group(1)
    done = browser.post(urljoin(cashier.url, action))
    if "请回到微信" not in done.text:
        done = browser.get(re.search(r'id="back" href="([^"]+)"', done.text).group(1).replace("&amp;", "&"))
    assert "请回到微信查看订单" in done.text and "浙江省" not in done.text
    assert fresh(order.order_no).status == "paid"
    assert "待发货" in phone.get(f"{there}/h5/orders/{order.order_no}").text


# -- the distributor's side -------------------------------------------------------

def test_the_distributor_sees_the_units_orders_with_buyer_names_masked(person, guest, base, catalogue_items):
    owner = person("店主", distributor=True)
    unit = referrals.distributor_of(user_of(owner).id).unit
    centre = owner.get(f"{base}/h5/center").text
    assert "/h5/unit-orders" in centre and "/h5/my-products" in centre
    guest.get(f"{base}/h5/u/{unit.slug}")
    order = buy(guest, base, catalogue_items[0], name="欧阳娜娜")
    elsewhere = buy(person("路人"), base, catalogue_items[1])

    page = owner.get(f"{base}/h5/unit-orders").text
    assert order.order_no[-6:] in page and "欧***" in page and "山茶花洗护礼盒" in page and "待付款" in page
    assert "欧阳娜娜" not in page and RECEIVER["mobile"] not in page and "文三路" not in page
    assert elsewhere.order_no[-6:] not in page
    customer = person("顾客")
    assert customer.get(f"{base}/h5/unit-orders", allow_redirects=False).headers["Location"].endswith("/h5/apply")


def test_the_distributor_chooses_the_units_products(person, guest, base, catalogue_items):
    owner = person("选品师", distributor=True)
    unit = referrals.distributor_of(user_of(owner).id).unit
    page = owner.get(f"{base}/h5/my-products")
    assert page.status_code == 200 and "旧款红枣" not in page.text
    token = csrf(page.text)
    gift, coffee = catalogue_items[0], catalogue_items[1]

    res = owner.post(f"{base}/h5/my-products", data={"csrf_token": token, "product_id": [gift.id, coffee.id]})
    assert res.status_code == 200 and "已保存" in res.text
    shop = guest.get(f"{base}/h5/u/{unit.slug}").text
    assert "山茶花洗护礼盒" in shop and "云南小粒咖啡豆" in shop and "竹纤维洗碗布" not in shop

    for bad in ([str(catalogue_items[3].id)], ["999999"], ["abc"], [str(gift.id), "-1"]):
        res = owner.post(f"{base}/h5/my-products", data={"csrf_token": token, "product_id": bad})
        assert res.status_code == 400 and "不存在或已下架" in res.text
    db.session.rollback()
    assert set(db.session.scalars(select(UnitProduct.product_id).where(UnitProduct.unit_id == unit.id))) == {
        gift.id, coffee.id}
    assert owner.post(f"{base}/h5/my-products", data={"csrf_token": token}).status_code == 200  # none: all
    assert "竹纤维洗碗布" in guest.get(f"{base}/h5/u/{unit.slug}").text
    customer = person("顾客")
    assert customer.get(f"{base}/h5/my-products", allow_redirects=False).headers["Location"].endswith("/h5/apply")


def test_the_menu_page_links_to_the_shop_and_my_orders(person, base):
    me = person("小王").get(f"{base}/h5/").text
    assert "/h5/shop" in me and "/h5/orders" in me and "/h5/cart" in me
    assert "很快就能在这里选购" not in person("小李").get(f"{base}/h5/shop").text


def test_a_page_opened_from_the_simulator_counts_as_inside_wechat(app, base, catalogue_items, settings):
    """The phone simulator plays WeChat's browser: its pages log in and pay with WeChat Pay."""
    phone = requests.Session()
    try:
        made = phone.post(f"{base}/sandbox/users", data={"nickname": "模拟器用户"}, allow_redirects=False)
        assert made.status_code == 302
        res = phone.get(f"{base}/sandbox/open", params={"url": f"{base}/h5/shop"})
        assert res.status_code == 200 and res.url.split("#")[0] == f"{base}/h5/shop"
        assert any("/h5/auth/callback" in r.url for r in res.history)  # silently, as in WeChat
        openid = phone.cookies["sandbox_openid"]
        assert f"微信用户{openid[-4:]}" in phone.get(f"{base}/h5/").text
        order = buy(phone, base, catalogue_items[1])
        assert order.buyer_id is not None
        page = phone.get(f"{base}/h5/orders/{order.order_no}/pay", allow_redirects=False)
        assert page.status_code == 200 and "微信支付" in page.text
    finally:
        phone.close()
