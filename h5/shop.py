"""The shop: a unit's selection, product pages, the cart and checkout.

Who is buying: inside WeChat, the user known through OAuth (as everywhere
in h5/); in any other browser, a guest known by the signed session cookie:
the mobile number given at checkout, the first unit link the browser opened
(where the guest's purchases count) and the orders placed from it. The cart
lives in the same signed session as ``{product_id: quantity}``. Prices and
amounts always come from the catalogue, never from a form.
"""
from __future__ import annotations

import functools
import logging
import re
import secrets
from urllib.parse import quote, urlsplit

import requests
from flask import jsonify, redirect, render_template, request, session, url_for
from redis.exceptions import LockError, RedisError
from wechatpy.exceptions import WeChatException

from handlers import catalogue, jssdk, money, orders, outbox, settings
from handlers.errors import DomainError
from handlers.orders import Buyer, Receiver
from models import Product, Unit, db

from . import bp
from .auth import current_user, ensure_guest_session

GUEST_MOBILE, GUEST_UNIT, GUEST_ORDERS, GUEST_RECEIVER = "guest_mobile", "guest_unit", "guest_orders", "guest_receiver"
CART = "cart"
KEEP_GUEST_ORDERS = 30
VISITOR = "visitor"
WX_SDK = "https://res.wx.qq.com/open/js/jweixin-1.6.0.js"
log = logging.getLogger(__name__)


@bp.app_template_filter("yuan")
def yuan(fen: int | None) -> str:
    """Integer fen shown as yuan with two decimals (16800 → 168.00)."""
    return money.yuan(int(fen or 0))


# -- who is buying -------------------------------------------------------

def in_wechat() -> bool:
    """WeChat's in-app browser (PROTOCOLS.md), or a page opened from the
    sandbox's phone simulator, which plays it."""
    return "MicroMessenger" in request.headers.get("User-Agent", "") or bool(session.get("sandbox_as"))


def current_buyer() -> Buyer:
    user = current_user()
    if user is not None:
        return Buyer(user=user)
    return Buyer(guest_mobile=session.get(GUEST_MOBILE), guest_unit_slug=session.get(GUEST_UNIT),
                 guest_order_nos=tuple(guest_order_nos()))


def shop_page(fn):
    """Open to guests in any browser but WeChat's; inside WeChat the user
    logs in silently (snsapi_base) as on every other page."""

    @functools.wraps(fn)
    def inner(*args, **kwargs):
        if current_user() is None and in_wechat():
            back = request.full_path.rstrip("?") if request.method == "GET" else url_for("h5.shop")
            return redirect(url_for("h5.login", next=back, scope="snsapi_base"))
        return fn(*args, **kwargs)

    return inner


def remember_guest_unit(unit: Unit) -> None:
    """The first distributor's link a guest's browser opens is where their
    purchases count (first touch, as for WeChat users)."""
    if current_user() is None and not unit.is_merchant and GUEST_UNIT not in session:
        session[GUEST_UNIT] = unit.slug


def guest_order_nos() -> list[str]:
    return [no for no in session.get(GUEST_ORDERS, []) if isinstance(no, str)]


def remember_guest_order(order_no: str, mobile: str) -> None:
    ensure_guest_session()  # the orders this browser may show end with the session
    session.permanent = True
    session[GUEST_MOBILE] = mobile
    session[GUEST_ORDERS] = ([order_no] + guest_order_nos())[:KEEP_GUEST_ORDERS]


# -- the cart --------------------------------------------------------------

def max_quantity() -> int:
    return settings.section("orders")["max_quantity"]


def cart() -> dict[int, int]:
    raw = session.get(CART) or {}
    return {int(k): v for k, v in raw.items() if str(k).isdigit() and isinstance(v, int) and v > 0}


def save_cart(items: dict[int, int]) -> None:
    session[CART] = {str(k): v for k, v in items.items() if v > 0}


def cart_count() -> int:
    return sum(cart().values())


@bp.app_context_processor
def shop_context():
    return {"cart_count": cart_count}


def quantity(raw: str | None, lowest: int) -> int:
    try:
        qty = int((raw or "").strip())
    except ValueError:
        raise DomainError("请填写购买数量") from None
    return orders.check_quantity(qty, lowest)


def plain_id(raw: str | None) -> int | None:
    """An id sent in a form: ASCII digits only ('١٢'.isdigit() is true too), else None."""
    raw = (raw or "").strip()
    return int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else None


def product_id(raw: str | None) -> int:
    pid = plain_id(raw)
    if pid is None:
        raise DomainError("商品不存在")
    return pid


def cart_lines() -> tuple[list[dict], int]:
    """Each line with the product as it is now; the total of what can be bought."""
    lines, total = [], 0
    for pid, qty in sorted(cart().items()):
        product = db.session.get(Product, pid)
        if product is None:
            continue
        problem = ("已下架" if not product.on_sale else
                   f"库存不足，仅剩 {product.stock} 件" if product.stock < qty else "")
        lines.append({"product": product, "qty": qty, "amount": product.price_fen * qty, "problem": problem})
        if not problem:
            total += product.price_fen * qty
    return lines, total


# -- pages -----------------------------------------------------------------

def visitor_key() -> str:
    """Who opened a link, for counting people rather than opens: the user,
    or a random key this browser's session keeps."""
    user = current_user()
    if user is not None:
        return f"u:{user.id}"
    if not isinstance(session.get(VISITOR), str):
        session[VISITOR] = secrets.token_urlsafe(16)
    return f"g:{session[VISITOR]}"


# -- sharing (WeChat's JS-SDK) ---------------------------------------------

def page_address() -> str:
    """This page's address as the phone's browser shows it (what WeChat
    checks the signature against): the public base, the path and query as sent."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if not raw or not raw.startswith("/"):
        raw = quote(request.path) + (f"?{request.query_string.decode('latin-1')}" if request.query_string else "")
    return settings.base_url() + raw


def share_context(share: dict) -> dict:
    """What the shared layout needs to set WeChat's share card: the share
    itself, and inside WeChat the JS-SDK with ``wx.config`` signed for this
    page. A signature that cannot be made now is asked for again by the page."""
    if not in_wechat():
        return {"share": share, "wx": None}
    from wxbot.client import wechat_client

    try:
        config = wechat_client().jsapi_config(page_address())
    except (requests.RequestException, WeChatException, RedisError, LockError) as exc:
        log.warning("no JS-SDK signature for this page now: %s", exc)
        config = None
    sandbox = settings.section("wechat")["sandbox"]
    return {"share": share, "wx": {
        "sdk": url_for("sandbox.static", filename="jweixin.js") if sandbox else WX_SDK,
        "config": config, "jsApiList": list(jssdk.JS_API_LIST), "signUrl": url_for("h5.jssdk_config")}}


@bp.get("/jssdk/config")
def jssdk_config():
    """``wx.config`` for the page at ``url`` (the page's own ``location.href``),
    when the signature the page came with was refused: once, with a fresh ticket."""
    from wxbot.client import wechat_client

    url = (request.args.get("url") or "").split("#", 1)[0]
    parts, ours = urlsplit(url), urlsplit(settings.base_url())
    if parts.scheme not in ("http", "https") or parts.netloc != ours.netloc or len(url) > 1024 \
            or not parts.path.startswith("/h5/"):
        return jsonify(error="只能为本站的页面签名"), 400
    try:
        config = wechat_client().jsapi_config(url, refresh=request.args.get("retry") == "1")
    except (requests.RequestException, WeChatException, RedisError, LockError) as exc:
        log.warning("JS-SDK signature failed: %s", exc)
        return jsonify(error="微信签名暂时不可用，请稍后再试"), 503
    return jsonify({**config, "jsApiList": list(jssdk.JS_API_LIST)})


def render_shop(unit: Unit, touch=None):
    """The unit's home page is its shop (the unit link and the 商城 menu)."""
    products = catalogue.unit_products(unit)
    owner = unit.distributor.user if unit.distributor else None
    user = current_user()
    sharer = jssdk.sharer_unit(user, unit)
    share = jssdk.unit_share(sharer, products if sharer.id == unit.id else None)
    return render_template("unit.html", unit=unit, owner=owner, products=products, touch=touch,
                           user=user, **share_context(share))


@bp.get("/shop")
@shop_page
def shop():
    return render_shop(orders.sale_place(current_buyer()).unit)


@bp.get("/p/<id:product_id>")
@shop_page
def product(product_id: int, error: str | None = None, qty: str = "1", status: int = 200):
    """A product as the shop's menu reaches it; its page's unit is where
    this buyer's purchases count."""
    return render_product(catalogue.get_product(product_id), None, error=error, qty=qty, status=status)


def render_product(item: Product, unit: Unit | None, touch=None, error: str | None = None, qty: str = "1",
                   status: int = 200):
    if not item.on_sale:
        return render_template("message.html", title="商品已下架", message=f"「{item.name}」已下架，去看看别的吧。",
                               action_url=url_for("h5.shop"), action_text="返回商城"), 404
    page_unit = unit or orders.sale_place(current_buyer()).unit
    share = jssdk.product_share(jssdk.sharer_unit(current_user(), page_unit), item)
    return render_template("shop/product.html", product=item, error=error, qty=qty, touch=touch, unit=unit,
                           limit=min(max_quantity(), item.stock), **share_context(share)), status


@bp.post("/cart/add")
@shop_page
def cart_add():
    pid = product_id(request.form.get("product_id"))
    item = catalogue.get_product(pid)
    items = cart()
    try:
        if not item.on_sale:
            raise DomainError("商品已下架")
        qty = quantity(request.form.get("qty"), 1)
        if pid not in items and len(items) >= orders.MAX_LINES:
            raise DomainError(f"购物车最多放 {orders.MAX_LINES} 种商品")
        total = items.get(pid, 0) + qty
        if total > max_quantity():
            raise DomainError(f"每种商品一次可买 1-{max_quantity()} 件，购物车里已有 {items.get(pid, 0)} 件")
        if total > item.stock:
            raise DomainError(f"库存不足，仅剩 {item.stock} 件")
    except DomainError as exc:
        return product(pid, error=exc.message, qty=request.form.get("qty", "1"), status=400)
    items[pid] = total
    save_cart(items)
    return redirect(url_for("h5.cart_page"))


@bp.get("/cart")
@shop_page
def cart_page(error: str | None = None, status: int = 200):
    lines, total = cart_lines()
    return render_template("shop/cart.html", lines=lines, total=total, error=error,
                           can_checkout=bool(lines) and all(not line["problem"] for line in lines)), status


@bp.post("/cart/update")
@shop_page
def cart_update():
    """Set one line's quantity; 0 removes it."""
    items = cart()
    try:
        pid = product_id(request.form.get("product_id"))
        qty = quantity(request.form.get("qty"), 0)
    except DomainError as exc:
        return cart_page(error=exc.message, status=400)
    if pid in items:
        items[pid] = qty
        save_cart(items)
    return redirect(url_for("h5.cart_page"))


@bp.post("/cart/remove")
@shop_page
def cart_remove():
    items = cart()
    items.pop(plain_id(request.form.get("product_id")), None)
    save_cart(items)
    return redirect(url_for("h5.cart_page"))


def _prefill() -> dict[str, str]:
    user = current_user()
    if user is None:
        return dict(session.get(GUEST_RECEIVER) or {})
    address = orders.last_address(user)
    return {"name": address.name, "mobile": address.mobile, "address": address.address} if address else {}


@bp.route("/checkout", methods=["GET", "POST"])
@shop_page
def checkout():
    form, error, status = _prefill(), None, 200
    if request.method == "GET" and not cart():
        return redirect(url_for("h5.cart_page"))
    if request.method == "POST":
        form = {k: request.form.get(k, "") for k in ("name", "mobile", "address", "note")}
        try:
            order = _place(form, request.form.get("checkout_key", ""))
        except DomainError as exc:
            outbox.rollback()
            error, status = exc.message, exc.status
        else:
            return redirect(url_for("h5.pay", order_no=order.order_no))
    lines, total = cart_lines()
    buyer = current_buyer()
    place = orders.sale_place(buyer)
    # A new one-time key for every form shown: a form submitted twice (a
    # double tap, a slow network's retry) is one order; a form shown again
    # after a refusal made no order, so its key was never used.
    return render_template("shop/checkout.html", lines=lines, total=total, form=form, error=error,
                           guest=buyer.user is None, guest_mobile=buyer.guest_mobile, unit=place.unit,
                           checkout_key=orders.new_checkout_key()), status


def _place(form: dict[str, str], checkout_key: str):
    receiver = Receiver.checked(form["name"], form["mobile"], form["address"])
    buyer = current_buyer()
    if buyer.user is None:  # a guest: the number they give is who they are from now on
        buyer = Buyer(guest_mobile=buyer.guest_mobile or receiver.mobile, guest_unit_slug=buyer.guest_unit_slug)
    order = orders.place_order(buyer, cart(), receiver, form.get("note", ""), checkout_key=checkout_key)
    outbox.commit()
    save_cart({})
    if buyer.user is None:
        remember_guest_order(order.order_no, buyer.guest_mobile)
        session[GUEST_RECEIVER] = {"name": receiver.name, "mobile": receiver.mobile, "address": receiver.address}
    return order
