"""Sharing through WeChat's JS-SDK (issue 11): the signature, the share card
each page sets, shared links that carry the sharer's unit and attribute
whoever opens them (with the query values WeChat adds), and the sandbox's
stand-in checking ``wx.config`` as WeChat does. Over real HTTP against the
live server."""
from __future__ import annotations

import json
import re
import threading

import pytest
import requests
from sqlalchemy import func, select

from conftest import needs_postgres
from handlers import jssdk, outbox
from models import ReferralTouch, UnitVisit, db
from sandbox import state
from test_shop_pages import WECHAT, browsers, catalogue_items, guest, person, user_of  # noqa: F401  (fixtures)

SHARED = "from=singlemessage&isappinstalled=0"


def share_of(page: str) -> dict:
    return json.loads(re.search(r"window\.fxShare = (\{.*?\});", page).group(1))


def wx_of(page: str) -> dict | None:
    found = re.search(r"window\.fxWx = (\{.*?\});", page)
    return json.loads(found.group(1)) if found else None


def verify(base: str, config: dict, url: str) -> str:
    """What the sandbox's JS-SDK stand-in asks WeChat when the page calls wx.config."""
    return requests.post(f"{base}/sandbox/jssdk/verify", json={**config, "url": url}, timeout=5).json()["errMsg"]


def visits() -> list[UnitVisit]:
    db.session.rollback()
    return db.session.scalars(select(UnitVisit).order_by(UnitVisit.id)).all()


# -- the signature ---------------------------------------------------------------

def test_the_signature_is_wechats_documented_example():
    # WeChat's JS-SDK documentation, appendix 1 (签名算法).
    assert jssdk.sign("sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg",
                      "Wm3WZYTPz0wzccnW", 1414587457, "http://mp.weixin.qq.com?params=value") \
        == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    # The fragment is not part of the signed address.
    assert jssdk.sign("t", "n", 1, "http://a.example/h5/u/x#top") == jssdk.sign("t", "n", 1, "http://a.example/h5/u/x")


# -- the pages ---------------------------------------------------------------------

def test_inside_wechat_the_unit_page_is_signed_for_its_exact_address(person, base, catalogue_items):
    seller = person("阿花", wechat=True, distributor=True)
    slug = _slug(seller, base)
    url = f"{base}/h5/u/{slug}?{SHARED}"
    page = seller.get(url).text

    wx = wx_of(page)
    assert wx["sdk"].endswith("/sandbox/static/jweixin.js") and f'src="{wx["sdk"]}"' in page
    assert wx["jsApiList"] == ["updateAppMessageShareData", "updateTimelineShareData"]
    assert verify(base, wx["config"], url) == "config:ok"
    assert verify(base, wx["config"], url + "#frag") == "config:ok"
    assert verify(base, wx["config"], f"{base}/h5/u/{slug}") == "config:invalid signature"
    assert verify(base, {**wx["config"], "signature": "0" * 40}, url) == "config:invalid signature"
    share = share_of(page)
    assert share == {"title": "阿花的小店", "desc": "阿花 为你推荐 3 件好物", "link": f"{base}/h5/u/{slug}",
                     "imgUrl": share["imgUrl"]} and share["imgUrl"].startswith("http")


def test_outside_wechat_the_pages_work_without_the_sdk(guest, base, catalogue_items):
    page = guest.get(f"{base}/h5/p/{catalogue_items[0].id}")
    assert page.status_code == 200 and "加入购物车" in page.text
    assert wx_of(page.text) is None and "jweixin" not in page.text
    share = share_of(page.text)  # the card is there for WeChat's crawler and the og: tags
    assert share["title"] == "山茶花洗护礼盒" and share["desc"].startswith("¥168.00")
    assert share["imgUrl"] == f"{base}/h5/static/products/camellia.png"


def test_a_distributor_shares_their_own_shop_from_any_product_page(person, base, catalogue_items):
    other = person("别家", distributor=True)
    seller = person("阿花", wechat=True, distributor=True)
    mine = _slug(seller, base)
    theirs = _slug(other, base)
    coffee = catalogue_items[1]

    for path in (f"/h5/p/{coffee.id}", f"/h5/u/{theirs}/p/{coffee.id}"):
        share = share_of(seller.get(base + path).text)
        assert share["link"] == f"{base}/h5/u/{mine}/p/{coffee.id}", path
        assert share["title"] == coffee.name and "阿花 推荐" in share["desc"]
    # Their shop too: the card is the sharer's shop, not the page's.
    share = share_of(seller.get(f"{base}/h5/u/{theirs}").text)
    assert share["link"] == f"{base}/h5/u/{mine}" and share["title"] == "阿花的小店"


def test_a_customer_shares_the_page_s_unit(person, guest, base, catalogue_items):
    seller = person("阿花", distributor=True)
    slug = _slug(seller, base)
    friend = person("朋友", wechat=True)
    coffee = catalogue_items[1]
    share = share_of(friend.get(f"{base}/h5/u/{slug}/p/{coffee.id}?{SHARED}").text)
    assert share["link"] == f"{base}/h5/u/{slug}/p/{coffee.id}"
    # Now owned by 阿花: the shop menu's product page shares 阿花's unit as well.
    assert share_of(friend.get(f"{base}/h5/p/{coffee.id}").text)["link"] == f"{base}/h5/u/{slug}/p/{coffee.id}"
    # A guest with no unit shares the merchant's shop.
    assert "/h5/u/" in share_of(guest.get(f"{base}/h5/p/{coffee.id}").text)["link"]


def test_the_poster_page_shares_the_unit(person, base):
    seller = person("阿花", wechat=True, distributor=True)
    page = seller.get(f"{base}/h5/qrcode").text
    assert share_of(page)["link"] == f"{base}/h5/u/{_slug(seller, base)}" and wx_of(page)["config"]
    assert "分享给朋友或朋友圈" in page


def _slug(browser, base) -> str:
    return re.search(r"/h5/u/([A-Za-z0-9_-]+)", browser.get(f"{base}/h5/center").text).group(1)


# -- shared links attribute ----------------------------------------------------------

def test_a_shared_product_link_with_wechats_query_values_attributes_the_friend(person, base, catalogue_items):
    seller = person("阿花", distributor=True)
    slug = _slug(seller, base)
    coffee = catalogue_items[1]
    friend = person("朋友", wechat=True)

    page = friend.get(f"{base}/h5/u/{slug}/p/{coffee.id}?{SHARED}")

    assert page.status_code == 200 and coffee.name in page.text and "加入购物车" in page.text
    assert "欢迎！你已成为 阿花的小店 的顾客" in page.text
    assert user_of(friend).referrer_id == user_of(seller).id and user_of(friend).source == "link"
    touch = db.session.scalars(select(ReferralTouch).where(ReferralTouch.user_id == user_of(friend).id)).one()
    assert (touch.token, touch.outcome) == (slug, "bound")
    [visit] = visits()
    assert (visit.product_id, visit.user_id, visit.visitor) == (coffee.id, user_of(friend).id,
                                                                f"u:{user_of(friend).id}")
    # Opening again, or another distributor's link, never rebinds.
    other = person("别家", distributor=True)
    friend.get(f"{base}/h5/u/{_slug(other, base)}?from=timeline&isappinstalled=0")
    assert user_of(friend).referrer_id == user_of(seller).id


def test_inside_wechat_a_shared_link_logs_in_and_keeps_the_query(browsers, person, sandbox_user, base,
                                                                  catalogue_items):
    seller = person("阿花", distributor=True)
    slug = _slug(seller, base)
    phone = browsers(WECHAT)
    res = phone.get(f"{base}/h5/u/{slug}/p/{catalogue_items[0].id}?{SHARED}", allow_redirects=False)
    assert res.status_code == 302 and "/h5/auth/login" in res.headers["Location"]
    assert "isappinstalled" in requests.utils.unquote(res.headers["Location"])
    assert visits() == []  # nobody known yet: the visit is logged when they land


def test_a_guest_outside_wechat_lands_in_the_shared_unit(guest, person, base, catalogue_items):
    seller = person("阿花", distributor=True)
    slug = _slug(seller, base)
    page = guest.get(f"{base}/h5/u/{slug}/p/{catalogue_items[0].id}?{SHARED}")
    assert page.status_code == 200
    assert share_of(page.text)["link"].endswith(f"/h5/u/{slug}/p/{catalogue_items[0].id}")
    guest.get(f"{base}/h5/u/{slug}")
    first, second = visits()
    assert first.visitor == second.visitor and first.visitor.startswith("g:") and first.user_id is None


def test_old_product_links_still_work_and_log_no_visit(guest, base, catalogue_items):
    assert guest.get(f"{base}/h5/p/{catalogue_items[0].id}?{SHARED}").status_code == 200
    assert visits() == []


@pytest.mark.parametrize("path,status", [
    ("/h5/u/nosuchslug/p/{id}", 200),            # an unknown unit: the merchant's shop
    ("/h5/u/{slug}/p/999999", 404),              # no such product
    ("/h5/u/{slug}/p/abc", 404),
    ("/h5/u/{slug}/p/{off}", 404),               # off sale: said so, and the link still attributes
    ("/h5/u/{long}/p/{id}", 200),
])
def test_bad_shared_links_are_explained(person, guest, base, catalogue_items, path, status):
    slug = _slug(person("阿花", distributor=True), base)
    url = base + path.format(slug=slug, id=catalogue_items[0].id, off=catalogue_items[3].id, long="x" * 300)
    res = guest.get(url)
    assert res.status_code == status
    if status == 404 and "abc" not in path:
        assert "商品" in res.text
    friend = person("路人", wechat=True)
    assert friend.get(url).status_code == status
    assert (user_of(friend).referrer_id is not None) == ("{off}" in path)


def test_a_distributor_opening_their_own_link_is_no_visit_and_no_customer(person, base, catalogue_items):
    seller = person("阿花", wechat=True, distributor=True)
    assert seller.get(f"{base}/h5/u/{_slug(seller, base)}?{SHARED}").status_code == 200
    assert visits() == [] and user_of(seller).referrer_id is None


# -- re-signing ------------------------------------------------------------------------

def test_the_page_can_ask_again_for_a_signature_of_its_own_address(person, base, settings):
    seller = person("阿花", wechat=True, distributor=True)
    slug = _slug(seller, base)
    url = f"{base}/h5/u/{slug}?{SHARED}"
    config = wx_of(seller.get(url).text)["config"]

    # WeChat's ticket ran out early (it happens): the page's signature is refused…
    state.expire_jsapi_ticket(settings["wechat"]["appid"])
    assert verify(base, config, url) == "config:invalid signature"
    # …and asked once more, with a fresh ticket, it is accepted.
    again = seller.get(f"{base}/h5/jssdk/config", params={"url": url + "#x", "retry": "1"})
    assert again.status_code == 200 and verify(base, again.json(), url) == "config:ok"
    assert again.json()["jsApiList"] == ["updateAppMessageShareData", "updateTimelineShareData"]
    # Not retrying keeps the cached ticket (no getticket per page view).
    plain = seller.get(f"{base}/h5/jssdk/config", params={"url": url}).json()
    assert verify(base, plain, url) == "config:ok"


@pytest.mark.parametrize("url", ["https://evil.example/h5/u/x", "javascript:alert(1)", "", "/h5/u/x",
                                 "{base}/admin/", "{base}/h5/" + "x" * 2000])
def test_the_signing_endpoint_signs_only_this_sites_pages(guest, base, url):
    res = guest.get(f"{base}/h5/jssdk/config", params={"url": url.format(base=base)})
    assert res.status_code == 400 and res.json()["error"] == "只能为本站的页面签名"


def test_a_forced_refresh_fetches_a_ticket_at_most_once_a_minute(app, settings):
    from wxbot.client import wechat_client

    with app.test_request_context():
        client = wechat_client()
        first = client.jsapi_ticket()
        state.expire_jsapi_ticket(settings["wechat"]["appid"])
        second = client.jsapi_ticket(refresh=True)
        state.expire_jsapi_ticket(settings["wechat"]["appid"])
        assert second != first and client.jsapi_ticket(refresh=True) == second  # the minute is not over


def test_the_stand_in_refuses_bad_config_requests(base, settings):
    for body in ({}, {"appId": settings["wechat"]["appid"]}, {"appId": "wxother", "timestamp": 1, "nonceStr": "n",
                                                              "signature": "s", "url": f"{base}/h5/"},
                 [1, 2], {"appId": [], "timestamp": True, "nonceStr": None, "signature": {}, "url": 3}):
        res = requests.post(f"{base}/sandbox/jssdk/verify", json=body, timeout=5)
        assert res.status_code == 200 and res.json()["errMsg"] != "config:ok"
    assert requests.post(f"{base}/sandbox/jssdk/verify", data=b"\xff{", timeout=5).json()["errMsg"] \
        == "config:invalid signature"


# -- at the same time --------------------------------------------------------------------

@needs_postgres
def test_many_opens_of_two_shared_links_at_once_bind_once_and_log_every_visit(person, base, catalogue_items):
    a, b = person("阿花", distributor=True), person("阿强", distributor=True)
    links = [f"{base}/h5/u/{_slug(a, base)}/p/{catalogue_items[0].id}?{SHARED}",
             f"{base}/h5/u/{_slug(b, base)}?from=timeline&isappinstalled=0"]
    friend = person("朋友", wechat=True)
    n = 8
    start = threading.Barrier(n)
    codes: list[int] = []

    def open_link(i: int) -> None:
        start.wait()
        codes.append(friend.get(links[i % 2]).status_code)

    threads = [threading.Thread(target=open_link, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * n
    db.session.rollback()
    owner = user_of(friend).referrer_id
    assert owner in (user_of(a).id, user_of(b).id)
    bound = db.session.scalar(select(func.count()).select_from(ReferralTouch).where(
        ReferralTouch.user_id == user_of(friend).id, ReferralTouch.outcome == "bound"))
    assert bound == 1 and len(visits()) == n


@needs_postgres
def test_first_page_views_at_once_share_one_ticket(person, base):
    seller = person("阿花", wechat=True, distributor=True)
    url = f"{base}/h5/u/{_slug(seller, base)}"
    outbox.commit()
    n = 6
    start = threading.Barrier(n)
    configs: list[dict] = []

    def view() -> None:
        start.wait()
        configs.append(wx_of(seller.get(url).text)["config"])

    threads = [threading.Thread(target=view) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(configs) == n and all(verify(base, c, url) == "config:ok" for c in configs)


# -- the simulator's sharing -------------------------------------------------------------

def test_the_simulator_shares_to_moments_and_to_a_friend(sandbox_user, base):
    me, friend = sandbox_user("阿花"), sandbox_user("小李")
    phone = requests.Session()
    phone.cookies.set("sandbox_openid", me.openid)
    card = {"title": "阿花的小店", "desc": "好物", "link": f"{base}/h5/u/abc", "imgUrl": ""}

    feed = phone.post(f"{base}/sandbox/share", data={"kind": "timeline", **card})
    assert feed.url.endswith("/sandbox/moments") and "已分享到朋友圈" in feed.text
    opened = re.search(r'class="moment-link" href="([^"]+)"', feed.text).group(1)
    assert "from%3Dtimeline%26isappinstalled%3D0" in opened and opened.startswith("/sandbox/open?url=")

    pick = phone.post(f"{base}/sandbox/share", data={"kind": "friend", **card})
    assert re.findall(r'data-nickname="([^"]+)"', pick.text) == ["小李"]  # not oneself
    sent = phone.post(f"{base}/sandbox/share/send", data={"to": friend.openid, **card})
    assert "已发送给 小李" in sent.text
    phone.cookies.set("sandbox_openid", friend.openid)
    chat = phone.get(f"{base}/sandbox/").text
    assert "阿花 分享给你" in chat and "from%3Dsinglemessage%26isappinstalled%3D0" in chat


@pytest.mark.parametrize("path,form,message", [
    ("/sandbox/share", {"kind": "moments", "link": "http://127.0.0.1/h5/"}, "这个页面没有可分享的链接"),
    ("/sandbox/share", {"kind": "timeline", "link": "javascript:alert(1)"}, "这个页面没有可分享的链接"),
    ("/sandbox/share", {"kind": "friend"}, "这个页面没有可分享的链接"),
    ("/sandbox/share/send", {"to": "nobody", "link": "http://127.0.0.1/h5/"}, "请选择一位朋友"),
    ("/sandbox/share/send", {"to": "SELF", "link": "http://127.0.0.1/h5/"}, "请选择一位朋友"),
])
def test_the_simulator_refuses_bad_shares(sandbox_user, base, path, form, message):
    me = sandbox_user("阿花")
    phone = requests.Session()
    phone.cookies.set("sandbox_openid", me.openid)
    res = phone.post(base + path, data={k: me.openid if v == "SELF" else v for k, v in form.items()})
    assert res.status_code == 200 and message in res.text
    db.session.rollback()
    from models import SandboxMessage

    assert db.session.scalar(select(func.count()).select_from(SandboxMessage).where(
        SandboxMessage.direction.in_(("moments", "share")))) == 0
    # Nobody in the simulator: back to choosing who you are.
    assert "你是谁" in requests.post(base + path, data=form, timeout=5).text
