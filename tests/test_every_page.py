"""Every page renders for every kind of person (issue 9, item 9).

The walk takes every GET route of the app from ``app.url_map`` — nothing is
listed by hand except how to fill a route's arguments with real ids, slugs
and order numbers made here — and opens it as a stranger, a guest buyer
with an order, a customer, a level-1 and a level-2 distributor: no page may
answer 5xx. Then every link, image and form on every page that rendered is
followed: a link that leads to a 404 or a 5xx, or a form whose action no
route takes, is a broken page too.

The merchant's staff walk too, one browser per role logged in at
/admin/login: every admin page their role may see must render, the others
answer 403, and an htmx ``hx-get`` is followed like a link while an
``hx-post`` must name a POST route.

A new route with arguments fails ``test_every_route_with_arguments_can_be_walked``
until ``FILL`` says how to reach it, so a renamed endpoint or a new page
cannot slip through; admin routes are filled by their arguments' names
(``ADMIN_ARGS``), so a new admin page is walked as soon as it exists. The
suite runs this on SQLite and on PostgreSQL + Redis.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from admin_helpers import PASSWORD, ROLES
from admin_helpers import log_in as admin_log_in
from distribution_helpers import make_distributor, make_user
from handlers import applications, audit, catalogue, exports, notifications, outbox, payments, rules, withdrawals
from handlers import media as pictures
from handlers import staff as staff_rules
from handlers.clock import CHINA, now
from handlers.payments import GatewayTrade
from models import Notification, Order, PayChannel, SandboxMedia, Staff, Withdrawal, db
from models.exports import Export
from models.reconcile import ReconcileDifference
from test_h5_auth import log_in
from test_income_pages import complete, settle_everything

PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
WECHAT = PHONE.replace("Safari/604.1", "MicroMessenger/8.0.50(0x1800323c) NetType/WIFI Language/zh_CN")
RECEIVER = {"name": "李雷", "mobile": "13912345678", "address": "浙江省杭州市西湖区文三路 100 号 2 单元 301"}
PEOPLE = ["stranger", "guest_buyer", "customer", "level1", "level2", *ROLES]
# Opening these on purpose changes who the browser is (the simulator's "open
# as" forgets the H5 session): walked once as a route, not followed as links.
NOT_FOLLOWED = {"sandbox.open_as"}


# -- the world: real rows for every route argument -------------------------------

@dataclass
class World:
    base: str
    browsers: dict[str, requests.Session] = field(default_factory=dict)
    orders: dict[str, str] = field(default_factory=dict)  # person → an order number of theirs
    product_id: int = 0
    slug: str = ""
    withdrawal: Withdrawal | None = None
    notification_ids: dict[str, int] = field(default_factory=dict)
    media_id: str = ""
    openid: str = ""
    out_bill_no: str = ""
    paid_order: str = ""  # paid and completed, with commission rows
    application_id: int = 0  # pending
    staff_id: int = 0  # a shipping clerk nobody walks as
    entry_id: int = 0  # an audit entry with a before and an after
    picture: str = ""  # an uploaded product picture's name under /media
    distributor_id: int = 0  # the level-1
    version_id: int = 0  # a rule version scheduled for later (cancellable)
    difference_id: int = 0  # a reconciliation difference, unresolved
    export_ids: dict[str, int] = field(default_factory=dict)  # staff role → a finished export of theirs

    def order_of(self, who: str) -> str:
        return self.orders.get(who) or self.orders["customer"]  # someone else's: "not found", never a 500


def _form(page: str, form_id: str) -> dict[str, str]:
    """The hidden fields of one form (CSRF token, one-time keys)."""
    body = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, flags=re.S).group(0)
    return {html.unescape(n): html.unescape(v) for n, v in
            re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body)}


def _buy(browser: requests.Session, base: str, product_id: int, qty: int = 1) -> str:
    """Cart and checkout through the pages, as the person would; the order number."""
    page = browser.get(f"{base}/h5/p/{product_id}").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    res = browser.post(f"{base}/h5/cart/add", data={"csrf_token": token, "product_id": product_id, "qty": qty},
                       allow_redirects=False)
    assert res.status_code == 302, res.text
    hidden = _form(browser.get(f"{base}/h5/checkout").text, "checkout-form")
    res = browser.post(f"{base}/h5/checkout", data={**hidden, **RECEIVER}, allow_redirects=False)
    assert res.status_code == 302, res.text
    return re.fullmatch(r".*/h5/orders/([0-9]+)/pay", res.headers["Location"]).group(1)


def _pay(order_no: str) -> None:
    order = db.session.scalars(select(Order).where(Order.order_no == order_no)).one()
    assert payments.mark_paid(GatewayTrade(PayChannel.ALIPAY, order_no, True, f"T{order_no}", order.total_fen)).ok
    outbox.commit()


def _logged_in(sandbox_user, base: str, nickname: str, referrer=None, distributor: bool = False):
    who = sandbox_user(nickname)
    d = make_distributor(nickname, referrer=referrer, openid=who.openid) if distributor else None
    browser = requests.Session()
    assert log_in(browser, base, who.openid, scope="snsapi_userinfo").status_code == 302
    browser.headers["User-Agent"] = WECHAT  # WeChat users read the pages in WeChat
    return browser, d


@pytest.fixture
def world(app, base, sandbox_user, settings, jobs) -> World:
    """A level-1 distributor, a level-2 one under them, a customer of the
    level-2 with a paid, completed order (so both earned and the level-1
    can withdraw by transfer), a guest who bought through the level-1's
    link, and a stranger."""
    w = World(base)
    item = catalogue.add_product("山茶花洗护礼盒", 16800, 50, "好物。", ["/h5/static/products/camellia.png"])
    catalogue.add_product("旧款红枣", 5900, 5, "", [], on_sale=False)
    outbox.commit()
    w.product_id = item.id
    level1, d1 = _logged_in(sandbox_user, base, "一级店主", distributor=True)
    level2, d2 = _logged_in(sandbox_user, base, "二级店主", referrer=d1, distributor=True)
    w.slug, w.distributor_id = d1.unit.slug, d1.id
    customer, _ = _logged_in(sandbox_user, base, "顾客")
    assert customer.get(f"{base}/h5/u/{d2.unit.slug}").status_code == 200  # now the level-2's customer
    paid = w.paid_order = _buy(customer, base, w.product_id, 2)
    _pay(paid)
    complete(db.session.scalars(select(Order).where(Order.order_no == paid)).one())
    settle_everything(settings)
    w.orders["customer"] = _buy(customer, base, w.product_id)  # and one waiting to be paid

    guest_buyer = requests.Session()
    guest_buyer.headers["User-Agent"] = PHONE
    assert guest_buyer.get(f"{base}/h5/u/{d1.unit.slug}").status_code == 200
    w.orders["guest_buyer"] = _buy(guest_buyer, base, w.product_id)
    stranger = requests.Session()
    stranger.headers["User-Agent"] = PHONE

    w.withdrawal = withdrawals.request_withdrawal(d1, 500, withdrawals.new_request_key())
    outbox.commit()
    result = app.test_cli_runner().invoke(args=["withdrawals", "transfer", str(w.withdrawal.id)])
    assert result.exit_code == 0, result.output
    jobs.run()
    db.session.rollback()
    w.withdrawal = db.session.get(Withdrawal, w.withdrawal.id)
    assert w.withdrawal.package_info  # the confirm page has something to confirm
    w.out_bill_no = w.withdrawal.out_bill_no

    for who, d in (("level1", d1), ("level2", d2)):
        w.notification_ids[who] = db.session.scalars(select(Notification.id).where(
            Notification.user_id == d.user_id)).first()
    media = SandboxMedia(media_id="walk-media-1", media_type="image", content_type="image/png",
                         content=b"\x89PNG\r\n\x1a\n")
    db.session.add(media)
    db.session.commit()
    w.media_id, w.openid = media.media_id, d1.user.openid
    w.browsers = {"stranger": stranger, "guest_buyer": guest_buyer, "customer": customer,
                  "level1": level1, "level2": level2}
    _admin_rows(w)
    for role in ROLES:
        staff_rules.create_staff(f"walk.{role}", role, PASSWORD, audit.SYSTEM)
        outbox.commit()
        browser = requests.Session()
        assert admin_log_in(browser, base, f"walk.{role}").status_code == 302
        w.browsers[role] = browser
    for role in ("owner", "finance"):  # the roles that may export: a finished export each
        staff_id = db.session.scalars(select(Staff.id).where(Staff.name == f"walk.{role}")).one()
        job = Export(request_key=exports.new_request_key(), staff_id=staff_id, source="orders", filters={},
                     file_name="订单.csv")
        db.session.add(job)
        outbox.commit()
        exports.build(job.id)
        w.export_ids[role] = job.id
    yield w
    for b in w.browsers.values():
        b.close()


def _admin_rows(w: World) -> None:
    """What the admin's pages show: a pending application, a staff member,
    an audit entry (the world already has a product, orders and a withdrawal)."""
    applicant = make_user("申请人")
    w.application_id = applications.apply_for_distributor(applicant, "韩梅梅", "13700137000", "想卖山茶花").id
    outbox.commit()
    w.staff_id = staff_rules.create_staff("walk.clerk", "shipping", PASSWORD, audit.SYSTEM).id
    outbox.commit()
    w.picture = pictures.store(pictures.prepare(_png())).rsplit("/", 1)[1]
    w.entry_id = audit.record(audit.Actor("walk.clerk", w.staff_id, "shipping", "127.0.0.1"), "product.edit",
                              "product", w.product_id, before={"price_fen": 16800, "on_sale": True},
                              after={"price_fen": 15800, "on_sale": True}, reason="双十二").id
    outbox.commit()
    w.version_id = rules.save({"level1_rate_bp": 1200}, reason="双十二活动", actor=audit.SYSTEM,
                              effective_from=now() + timedelta(days=10))[0].id
    yesterday = (datetime.now(CHINA) - timedelta(days=1)).date()
    difference = ReconcileDifference(day=yesterday, channel="wechatpay", kind="trade", ref="FXWALK0001",
                                     problem="gateway_only", gateway_fen=16800, gateway_state="SUCCESS")
    db.session.add(difference)
    outbox.commit()
    w.difference_id = difference.id


def _png() -> bytes:
    from io import BytesIO

    from PIL import Image

    out = BytesIO()
    Image.new("RGB", (64, 48), (212, 96, 72)).save(out, "PNG")
    return out.getvalue()


# Admin routes are filled by their arguments' names: a new admin page is walked as it lands.
ADMIN_ARGS = {
    "application_id": lambda w: w.application_id,
    "withdrawal_id": lambda w: w.withdrawal.id,
    "product_id": lambda w: w.product_id,
    "staff_id": lambda w: w.staff_id,
    "entry_id": lambda w: w.entry_id,
    "order_no": lambda w: w.paid_order,
    "filename": lambda w: "admin.css",
    "distributor_id": lambda w: w.distributor_id,
    "version_id": lambda w: w.version_id,
    "difference_id": lambda w: w.difference_id,
    "day": lambda w: (datetime.now(CHINA) - timedelta(days=1)).date().isoformat(),
}


def fillable(rule) -> bool:
    return not rule.arguments or rule.endpoint in FILL or (
        rule.endpoint.startswith("admin.") and set(rule.arguments) <= set(ADMIN_ARGS))


def values_for(rule, w: World, who: str) -> dict:
    if not rule.arguments:
        return {}
    if rule.endpoint in FILL:
        return FILL[rule.endpoint](w, who)
    return {name: ADMIN_ARGS[name](w) for name in rule.arguments}


def admin_url(rule, w: World, who: str = "owner") -> str:
    """The path of an admin route, its arguments filled from the world's rows
    (in a test_request_context)."""
    return url_of(rule, values_for(rule, w, who))


# How to fill each route's arguments, by endpoint, for the person walking.
FILL = {
    "h5.order_page": lambda w, who: {"order_no": w.order_of(who)},
    "h5.pay": lambda w, who: {"order_no": w.order_of(who)},
    "h5.pay_return": lambda w, who: {"order_no": w.order_of(who), "channel": "alipay",
                                     "token": _pay_token(w.order_of(who))},
    "h5.product": lambda w, who: {"product_id": w.product_id},
    "h5.unit_link": lambda w, who: {"slug": w.slug},
    "h5.unit_product_link": lambda w, who: {"slug": w.slug, "product_id": w.product_id},
    "h5.static": lambda w, who: {"filename": "weui.min.css"},
    "h5.confirm_transfer": lambda w, who: {"withdrawal_id": w.withdrawal.id},
    "sandbox.static": lambda w, who: {"filename": "sandbox.css"},
    "admin.static": lambda w, who: {"filename": "admin.css"},
    "admin.export": lambda w, who: {"export_id": w.export_ids.get(who, w.export_ids["owner"])},
    "admin.export_download": lambda w, who: {"export_id": w.export_ids.get(who, w.export_ids["owner"])},
    "media": lambda w, who: {"filename": w.picture},
    "sandbox.avatar": lambda w, who: {"openid": w.openid},
    "sandbox.media": lambda w, who: {"media_id": w.media_id},
    "sandbox_wechatpay.query": lambda w, who: {"out_trade_no": w.order_of(who)},
    "sandbox_wechatpay.query_transfer_bill": lambda w, who: {"out_bill_no": w.out_bill_no},
}


# Pages each person must see rendered (200, HTML) on the walk.
RENDERS = {
    "stranger": lambda w: ["/h5/shop", f"/h5/u/{w.slug}", f"/h5/p/{w.product_id}", f"/h5/u/{w.slug}/p/{w.product_id}",
                           "/h5/cart"],
    "guest_buyer": lambda w: ["/h5/shop", "/h5/orders", f"/h5/orders/{w.orders['guest_buyer']}"],
    "customer": lambda w: ["/h5/", "/h5/apply", "/h5/leaderboard", "/h5/orders", f"/h5/orders/{w.orders['customer']}",
                           f"/h5/orders/{w.orders['customer']}/pay", "/h5/notifications"],
    "level1": lambda w: ["/h5/", "/h5/center", "/h5/leaderboard", "/h5/team", "/h5/income", "/h5/withdraw", "/h5/qrcode",
                         "/h5/unit-orders", "/h5/my-products", f"/h5/withdrawals/{w.withdrawal.id}/confirm"],
    "level2": lambda w: ["/h5/", "/h5/center", "/h5/team", "/h5/income", "/h5/unit-orders"],
}
# Staff: the dashboard, their own pages and (see staff_pages) every admin page their role may see.
for _role in ROLES:
    RENDERS[_role] = lambda w: ["/admin/", "/admin/me/password", "/admin/me/2fa"]
OWN_AREA = {"owner": ["/admin/staff", "/admin/audit"], "finance": ["/admin/audit"]}


def staff_pages(app, w: World, role: str) -> dict[str, str]:
    """Every admin GET page (path → endpoint) this role's permission lets it open."""
    out = {}
    for rule in get_rules(app):
        view = app.view_functions[rule.endpoint]
        permission = getattr(view, "permission", None)
        if not rule.endpoint.startswith("admin.") or rule.endpoint == "admin.static" or permission in (None, "public"):
            continue
        if staff_rules.may(role, permission) and fillable(rule):
            out[admin_url(rule, w, role)] = rule.endpoint
    return out


def _pay_token(order_no: str) -> str:
    from h5.orders import pay_token

    return pay_token(order_no)


def get_rules(app) -> list:
    return sorted((r for r in app.url_map.iter_rules() if "GET" in r.methods), key=lambda r: (r.rule, r.endpoint))


def url_of(rule, values: dict) -> str:
    needed = {k: v for k, v in values.items() if k in rule.arguments and k not in (rule.defaults or {})}
    built = rule.build(needed, append_unknown=False)
    assert built is not None, f"cannot build {rule.rule} from {needed}"
    return built[1]


# -- the tests --------------------------------------------------------------------

def test_every_route_with_arguments_can_be_walked(app):
    """A route added or renamed later must say here how to reach it."""
    missing = sorted({f"{r.endpoint} ({r.rule})" for r in get_rules(app) if not fillable(r)})
    assert not missing, "add these to FILL (or ADMIN_ARGS) in tests/test_every_page.py: " + ", ".join(missing)
    gone = sorted(set(FILL) - {r.endpoint for r in get_rules(app)})
    assert not gone, f"FILL names endpoints that no longer exist: {gone}"


@pytest.mark.parametrize("who", PEOPLE)
def test_every_page_renders_and_every_link_on_it_works(app, world, who):
    browser = world.browsers[who]
    problems: list[str] = []
    pages: dict[str, str] = {}
    opened: dict[str, int] = {}  # path walked → its final status
    with app.test_request_context():
        for rule in get_rules(app):
            if not fillable(rule):
                problems.append(f"no way to fill {rule.rule}")
                continue
            path = url_of(rule, values_for(rule, world, who))
            res = browser.get(world.base + path)  # and wherever it sends the browser
            hops = [r.status_code for r in res.history] + [res.status_code]
            opened[path] = res.status_code
            if max(hops) >= 500:
                problems.append(f"{hops} GET {path} ({rule.endpoint})")
            elif res.status_code == 200 and res.headers.get("Content-Type", "").startswith("text/html"):
                landed = urlsplit(res.url)
                pages[landed.path + (f"?{landed.query}" if landed.query else "")] = res.text
        if who in ROLES:
            # every admin page of the role's areas opens (no 403, no "not found" for the world's rows)
            for path, endpoint in staff_pages(app, world, who).items():
                if opened.get(path) != 200:
                    problems.append(f"{opened.get(path)} GET {path} ({endpoint}) for {who}, whose role may see it")
    # The walk saw the pages as that person (not, say, logged out everywhere).
    for path in RENDERS[who](world) + OWN_AREA.get(who, []):
        if path not in pages:
            problems.append(f"{path} did not render for {who}")
    problems += broken_links(app, browser, world.base, pages)
    assert not problems, f"{who}:\n" + "\n".join(problems)


# -- following links ----------------------------------------------------------------

TAG = re.compile(r"<([a-zA-Z][a-zA-Z0-9-]*)\b([^>]*)>")
ATTR = re.compile(r'([a-zA-Z_:-]+)\s*=\s*"([^"]*)"')


def links_of(page: str) -> list[tuple[str, str, str]]:
    """(kind, method, url) of every a/link href, img/script src, form action
    and htmx hx-get / hx-post on any element."""
    found = []
    for tag, attrs in TAG.findall(page):
        a = {k.lower(): html.unescape(v) for k, v in ATTR.findall(attrs)}
        tag = tag.lower()
        for verb in ("get", "post"):
            if f"hx-{verb}" in a:
                found.append((f"hx-{verb}", verb.upper(), a[f"hx-{verb}"]))
        if tag == "form":
            found.append(("form", a.get("method", "get").upper(), a.get("action", "")))
        elif tag in ("a", "link") and "href" in a:
            found.append((tag, "GET", a["href"]))
        elif tag in ("img", "script") and "src" in a:
            found.append((tag, "GET", a["src"]))
    return found


def broken_links(app, browser, base: str, pages: dict[str, str]) -> list[str]:
    host = urlsplit(base).netloc
    adapter = app.url_map.bind(host)
    problems, seen = [], set()
    for page_path, page in pages.items():
        for kind, method, target in links_of(page):
            if target.startswith(("#", "javascript:", "mailto:", "tel:", "weixin:", "data:")):
                continue
            url = urljoin(base + page_path, target)
            parts = urlsplit(url)
            if parts.netloc != host or (kind, method, url) in seen:
                continue  # another site's address, or already checked
            seen.add((kind, method, url))
            where = f"{kind} {target!r} on {page_path}"
            try:
                endpoint, _ = adapter.match(parts.path, method=method)
            except RequestRedirect:
                continue  # werkzeug's own slash redirect: the page exists
            except HTTPException as exc:
                problems.append(f"{exc.code} {where}: no route takes {method} {parts.path}")
                continue
            if method != "GET" or endpoint in NOT_FOLLOWED:
                continue  # a POST form exists as a route; submitting it would change what is walked
            res = browser.get(url)
            hops = [r.status_code for r in res.history] + [res.status_code]
            if res.status_code == 404 or max(hops) >= 500:
                problems.append(f"{hops} {where}")
    return problems
