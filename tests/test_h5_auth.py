"""H5 identity through WeChat OAuth, walked by a browser (a requests
session keeping cookies) against the live server: the product redirects to
the sandbox's open.weixin.qq.com, the user picks who they are, and the
product exchanges the code over real HTTP at the sandbox's api."""
from __future__ import annotations

import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from sqlalchemy import select

from app.extensions import db
from models import User
from models.h5_session import H5Session

LOGIN_FAILED = "登录失败"
WECHAT_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) MicroMessenger/8.0.50"
STATE_GONE = "登录链接已失效或已被使用"


@pytest.fixture
def browsers():
    opened = []

    def make() -> requests.Session:
        s = requests.Session()
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def browser(browsers) -> requests.Session:
    return browsers()


def start_login(browser, base, **params) -> str:
    """Open /h5/auth/login; return where it sends the browser."""
    res = browser.get(f"{base}/h5/auth/login", params=params, allow_redirects=False)
    assert res.status_code == 302
    return res.headers["Location"]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def choose(browser, authorize_url: str, openid: str | None = None, **form) -> str:
    """On the sandbox's authorize page, pick a user; return the redirect back."""
    page = browser.get(authorize_url)
    assert page.status_code == 200
    if openid:
        assert f'value="{openid}"' in page.text  # the person is on the page
        form["openid"] = openid
    fields = {k: query(authorize_url).get(k, "") for k in ("appid", "redirect_uri", "response_type", "scope",
                                                            "state")}
    res = browser.post(page.url, data={**fields, **form}, allow_redirects=False)
    assert res.status_code == 302, res.text
    return res.headers["Location"]


def log_in(browser, base, openid: str, **params) -> requests.Response:
    callback = choose(browser, start_login(browser, base, **params), openid)
    return browser.get(callback, allow_redirects=False)


def who(browser, base) -> str | None:
    """The name the H5 home page greets, or None when it asks to log in."""
    res = browser.get(f"{base}/h5/", allow_redirects=False)
    if res.status_code == 302:
        assert "/h5/auth/login" in res.headers["Location"]
        return None
    assert res.status_code == 200
    return re.search(r'class="fx-profile__name">([^<]*)<', res.text).group(1)


def product_user(openid: str) -> User | None:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()


def sns_token(settings, code: str) -> dict:
    w = settings["wechat"]
    return requests.get(f"{w['api_base']}/sns/oauth2/access_token", timeout=5, params={
        "appid": w["appid"], "secret": w["secret"], "code": code, "grant_type": "authorization_code"}).json()


def test_pages_send_a_stranger_to_login_with_the_page_to_come_back_to(browser, base):
    # Inside WeChat (outside it, the shop lets a guest browse and buy).
    res = browser.get(f"{base}/h5/shop", allow_redirects=False, headers={"User-Agent": WECHAT_UA})
    assert res.status_code == 302
    target = urlsplit(res.headers["Location"])
    assert target.path == "/h5/auth/login"
    assert parse_qs(target.query) == {"next": ["/h5/shop"], "scope": ["snsapi_base"]}


def test_login_redirects_to_wechats_authorize_page(browsers, base, settings):
    first, second = browsers(), browsers()
    location = start_login(first, base, next="/h5/shop")

    parts = urlsplit(location)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == \
        f"{settings['wechat']['open_base']}/connect/oauth2/authorize"
    assert parts.fragment == "wechat_redirect"
    q = query(location)
    assert q["appid"] == settings["wechat"]["appid"]
    assert q["redirect_uri"] == f"{base}/h5/auth/callback"
    assert q["response_type"] == "code"
    assert q["scope"] == "snsapi_base"
    assert re.fullmatch(r"[A-Za-z0-9]{16,128}", q["state"])
    assert query(start_login(second, base))["state"] != q["state"]  # one state per visit
    assert query(start_login(first, base, scope="snsapi_userinfo"))["scope"] == "snsapi_userinfo"
    assert query(start_login(first, base, scope="snsapi_login"))["scope"] == "snsapi_base"


def test_base_login_picks_a_user_and_comes_back_logged_in(browser, base, sandbox_user, settings):
    person = sandbox_user("小王")
    authorize = start_login(browser, base, next="/h5/shop")
    page = browser.get(authorize)
    assert "以哪位微信用户的身份打开网页" in page.text and "小王" in page.text

    callback = choose(browser, authorize, person.openid)

    assert callback.startswith(f"{base}/h5/auth/callback?")
    back = query(callback)
    assert set(back) == {"code", "state"} and back["state"] == query(authorize)["state"]
    res = browser.get(callback, allow_redirects=False)
    assert res.status_code == 302
    assert urljoin(base, res.headers["Location"]) == f"{base}/h5/shop"
    cookie = res.headers["Set-Cookie"]
    assert cookie.startswith("fx_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie

    shop = browser.get(f"{base}/h5/shop", allow_redirects=False)
    assert shop.status_code == 200 and "商城" in shop.text
    assert who(browser, base) == f"微信用户{person.openid[-4:]}"  # base scope: no nickname
    user = product_user(person.openid)
    assert user.first_contact == "oauth"
    assert user.nickname is None and user.avatar_url is None


def test_userinfo_login_stores_nickname_and_avatar(browser, base, sandbox_user):
    person = sandbox_user("小红")
    authorize = start_login(browser, base, scope="snsapi_userinfo")
    assert "申请获取你的昵称、头像" in browser.get(authorize).text

    res = browser.get(choose(browser, authorize, person.openid), allow_redirects=False)

    assert res.status_code == 302 and urljoin(base, res.headers["Location"]) == f"{base}/h5/"
    user = product_user(person.openid)
    assert user.nickname == "小红"
    assert user.avatar_url == f"{base}/sandbox/avatar/{person.openid}.svg"
    assert who(browser, base) == "小红"
    home = browser.get(f"{base}/h5/").text
    assert f'src="{user.avatar_url}"' in home
    assert browser.get(user.avatar_url).headers["Content-Type"].startswith("image/svg+xml")


def test_a_new_person_can_be_made_on_the_authorize_page(browser, base):
    authorize = start_login(browser, base, scope="snsapi_userinfo")
    res = browser.get(choose(browser, authorize, nickname="  阿  强 "), allow_redirects=False)
    assert res.status_code == 302
    assert who(browser, base) == "阿 强"


def test_denying_userinfo_is_explained_and_logs_no_one_in(browser, base, sandbox_user):
    sandbox_user("小红")
    authorize = start_login(browser, base, scope="snsapi_userinfo")
    callback = choose(browser, authorize, decision="deny")
    assert "code" not in query(callback)
    res = browser.get(callback, allow_redirects=False)
    assert res.status_code == 400 and "你没有同意授权" in res.text
    assert who(browser, base) is None


def test_replaying_the_callback_fails_and_logs_no_one_in(browsers, base, sandbox_user):
    person = sandbox_user("小王")
    owner = browsers()
    callback = choose(owner, start_login(owner, base), person.openid)
    assert owner.get(callback, allow_redirects=False).status_code == 302

    again = owner.get(callback, allow_redirects=False)
    assert again.status_code == 400
    assert LOGIN_FAILED in again.text and STATE_GONE in again.text

    # Someone who finds the URL (history, logs, a forwarded link) gets nothing.
    stranger = browsers()
    res = stranger.get(callback, allow_redirects=False)
    assert res.status_code == 400 and STATE_GONE in res.text
    assert who(stranger, base) is None


def test_wrong_state_fails_and_logs_no_one_in(browser, base, sandbox_user, settings):
    person = sandbox_user("小王")
    callback = choose(browser, start_login(browser, base), person.openid)
    forged = re.sub(r"state=[A-Za-z0-9]+", "state=0123456789abcdef0123456789abcdef", callback)
    assert forged != callback

    res = browser.get(forged, allow_redirects=False)

    assert res.status_code == 400 and STATE_GONE in res.text
    assert who(browser, base) is None
    assert product_user(person.openid) is None
    assert browser.get(f"{base}/h5/auth/callback", allow_redirects=False).status_code == 400


def test_a_code_works_once(browsers, base, sandbox_user, settings):
    person = sandbox_user("小王")
    first = browsers()
    callback = choose(first, start_login(first, base), person.openid)
    code = query(callback)["code"]
    assert first.get(callback, allow_redirects=False).status_code == 302

    assert sns_token(settings, code)["errcode"] == 40163  # at WeChat: code been used

    # Another visit with its own, valid state but the spent code: refused.
    second = browsers()
    state = query(start_login(second, base))["state"]
    res = second.get(f"{base}/h5/auth/callback", params={"code": code, "state": state}, allow_redirects=False)
    assert res.status_code == 400 and LOGIN_FAILED in res.text
    assert who(second, base) is None


def test_an_invalid_code_is_refused(browser, base, settings):
    assert sns_token(settings, "not-a-code")["errcode"] == 40029
    assert sns_token(settings, "")["errcode"] == 40029

    state = query(start_login(browser, base))["state"]
    res = browser.get(f"{base}/h5/auth/callback", params={"code": "not-a-code", "state": state},
                      allow_redirects=False)
    assert res.status_code == 400 and LOGIN_FAILED in res.text
    assert who(browser, base) is None


def test_a_state_is_spent_by_a_failed_attempt_too(browser, base, sandbox_user):
    person = sandbox_user("小王")
    callback = choose(browser, start_login(browser, base), person.openid)
    state = query(callback)["state"]
    failed = browser.get(f"{base}/h5/auth/callback", params={"code": "not-a-code", "state": state},
                         allow_redirects=False)
    assert failed.status_code == 400

    res = browser.get(callback, allow_redirects=False)  # a good code, the same state

    assert res.status_code == 400 and STATE_GONE in res.text
    assert who(browser, base) is None


def test_code_exchange_is_in_wechats_format(browser, base, sandbox_user, settings):
    person = sandbox_user("小王")
    code = query(choose(browser, start_login(browser, base, scope="snsapi_userinfo"), person.openid))["code"]
    grant = sns_token(settings, code)
    assert grant["openid"] == person.openid and grant["scope"] == "snsapi_userinfo"
    assert grant["expires_in"] == 7200 and grant["access_token"] and grant["refresh_token"]
    w = settings["wechat"]
    info = requests.get(f"{w['api_base']}/sns/userinfo", timeout=5, params={
        "access_token": grant["access_token"], "openid": person.openid, "lang": "zh_CN"}).json()
    assert info["nickname"] == "小王" and info["headimgurl"].endswith(f"/sandbox/avatar/{person.openid}.svg")

    base_code = query(choose(browser, start_login(browser, base), person.openid))["code"]
    base_grant = sns_token(settings, base_code)
    refused = requests.get(f"{w['api_base']}/sns/userinfo", timeout=5, params={
        "access_token": base_grant["access_token"], "openid": person.openid}).json()
    assert refused["errcode"] == 48001  # snsapi_base gives no profile


@pytest.mark.parametrize("target", [
    "https://evil.example/h5/",
    "//evil.example/h5/",
    "http:evil.example/h5/",
    "/\\evil.example/h5/",
    " //evil.example/h5/",
    "/sandbox/open?url=https://evil.example/",
    "javascript:alert(1)",
    "/h5/\r\nLocation: https://evil.example/",
])
def test_next_cannot_leave_the_site(browser, base, sandbox_user, target):
    person = sandbox_user("小王")
    if not target.isprintable():  # control characters are refused at the door (app/input_guard.py)
        res = browser.get(f"{base}/h5/auth/login", params={"next": target}, allow_redirects=False)
        assert res.status_code == 400 and "Location" not in res.headers
        return
    res = log_in(browser, base, person.openid, next=target)
    assert res.status_code == 302
    landed = urljoin(base, res.headers["Location"])
    assert landed == f"{base}/h5/"
    assert who(browser, base) == f"微信用户{person.openid[-4:]}"


def test_authorize_page_refuses_a_foreign_redirect_uri(browser, base, settings):
    authorize = start_login(browser, base)
    evil = authorize.replace("redirect_uri=http%3A%2F%2F127.0.0.1", "redirect_uri=http%3A%2F%2Fevil.example")
    assert evil != authorize
    res = browser.get(evil)
    assert res.status_code == 400 and "redirect_uri" in res.text and "10003" in res.text
    script = authorize.replace("redirect_uri=http%3A", "redirect_uri=javascript%3A")
    assert script != authorize and browser.get(script).status_code == 400
    wrong_app = browser.get(authorize.replace(f"appid={settings['wechat']['appid']}", "appid=wx000"))
    assert wrong_app.status_code == 400 and "appid" in wrong_app.text


# -- sessions that can be ended (issue 9, item 8) ------------------------------

def copy_of(browser) -> requests.Session:
    """Another browser carrying the same cookie (copied from a shared phone,
    a proxy log, a backup)."""
    thief = requests.Session()
    thief.cookies.set("fx_session", browser.cookies.get("fx_session"))
    return thief


def log_out(browser, base, page: str = "/h5/") -> requests.Response:
    form = browser.get(f"{base}{page}").text
    token = re.search(r'id="logout">\s*<input type="hidden" name="csrf_token" value="([^"]+)"', form).group(1)
    return browser.post(f"{base}/h5/auth/logout", data={"csrf_token": token}, allow_redirects=False)


def sessions_of(openid: str) -> list[H5Session]:
    db.session.rollback()
    return db.session.scalars(select(H5Session).join(User, H5Session.user_id == User.id)
                              .where(User.openid == openid).order_by(H5Session.created_at)).all()


def signed_cookie(app, data: dict) -> str:
    return app.session_interface.get_signing_serializer(app).dumps(data)


def test_logout_is_a_post_that_ends_the_session_for_every_copy_of_the_cookie(browser, base, sandbox_user):
    person = sandbox_user("小王")
    log_in(browser, base, person.openid)
    thief = copy_of(browser)
    assert who(thief, base) == who(browser, base) == f"微信用户{person.openid[-4:]}"

    res = log_out(browser, base)

    assert res.status_code == 302 and urlsplit(res.headers["Location"]).path == "/h5/shop"
    assert who(browser, base) is None
    assert who(thief, base) is None  # the copy is worth nothing now
    assert thief.get(f"{base}/h5/orders/00000000000000000000", allow_redirects=False).status_code == 404
    [record] = sessions_of(person.openid)
    assert record.revoked_at is not None


def test_logout_by_get_or_without_its_csrf_token_is_refused(browser, base, sandbox_user):
    person = sandbox_user("小王")
    log_in(browser, base, person.openid)
    name = who(browser, base)
    assert browser.get(f"{base}/h5/auth/logout", allow_redirects=False).status_code == 405
    assert browser.post(f"{base}/h5/auth/logout", allow_redirects=False).status_code == 400
    assert who(browser, base) == name  # a link or a cross-site form cannot log anyone out
    assert sessions_of(person.openid)[0].revoked_at is None


def test_every_login_is_a_session_of_its_own_and_a_new_login_ends_the_old_one(browsers, base, sandbox_user):
    person = sandbox_user("小王")
    phone, laptop = browsers(), browsers()
    log_in(phone, base, person.openid)
    log_in(laptop, base, person.openid)
    before = copy_of(phone)
    assert len(sessions_of(person.openid)) == 2

    log_in(phone, base, person.openid)  # the phone logs in again

    assert who(phone, base) and who(laptop, base)
    assert who(before, base) is None  # the phone's old cookie ended with the new login
    assert [r.revoked_at is None for r in sessions_of(person.openid)] == [False, True, True]
    log_out(laptop, base)
    assert who(laptop, base) is None and who(phone, base)  # one logout ends one session


def test_a_session_idle_for_longer_than_the_cookie_lives_is_over(app, browser, base, sandbox_user):
    from datetime import timedelta

    from handlers.clock import now

    person = sandbox_user("小王")
    log_in(browser, base, person.openid)
    [record] = sessions_of(person.openid)
    record.last_seen_at = now() - timedelta(hours=2)
    db.session.commit()
    assert who(browser, base)  # in use: seen again
    [record] = sessions_of(person.openid)
    assert record.last_seen_at > now() - timedelta(minutes=5)

    record.last_seen_at = now() - app.permanent_session_lifetime - timedelta(minutes=1)
    db.session.commit()
    assert who(copy_of(browser), base) is None
    assert who(browser, base) is None


def test_a_cookie_without_a_live_session_says_nobody(app, base, sandbox_user):
    person = sandbox_user("小王")
    browser = requests.Session()
    assert log_in(browser, base, person.openid).status_code == 302
    assert product_user(person.openid)
    for data in ({"openid": person.openid},  # signed before sessions were kept
                 {"sid": "no-such-session", "openid": person.openid},
                 {"sid": ["not", "a", "string"]},
                 {"sid": "x" * 500}):
        forged = requests.Session()
        forged.cookies.set("fx_session", signed_cookie(app, data))
        assert who(forged, base) is None, data


def test_a_guest_buyer_logs_out_and_the_orders_are_gone_from_every_copy(app, base):
    from test_shop_pages import PHONE, add, placed, checkout

    from handlers import catalogue, outbox

    item = catalogue.add_product("竹纤维洗碗布", 1990, 5)
    outbox.commit()
    guest = requests.Session()
    guest.headers["User-Agent"] = PHONE
    assert add(guest, base, item.id).status_code == 302
    order = placed(checkout(guest, base))
    mine = f"{base}/h5/orders/{order.order_no}"
    thief = copy_of(guest)
    thief.headers["User-Agent"] = PHONE
    assert guest.get(mine).status_code == thief.get(mine).status_code == 200
    db.session.rollback()
    [record] = db.session.scalars(select(H5Session)).all()
    assert record.user_id is None  # a guest's session: no WeChat user behind it

    res = log_out(guest, base, "/h5/orders")

    assert res.status_code == 302
    assert guest.get(mine).status_code == thief.get(mine).status_code == 404
    assert order.order_no not in thief.get(f"{base}/h5/orders").text
    assert guest.get(f"{base}/h5/shop").status_code == 200  # still a guest who can shop


def test_two_logouts_at_once_from_copies_of_the_cookie_both_end_it(browser, base, sandbox_user):
    import threading

    person = sandbox_user("小王")
    log_in(browser, base, person.openid)
    form = browser.get(f"{base}/h5/").text
    token = re.search(r'id="logout">\s*<input type="hidden" name="csrf_token" value="([^"]+)"', form).group(1)
    copies = [copy_of(browser) for _ in range(4)]
    start, answers = threading.Barrier(len(copies)), []

    def tap(b):
        start.wait()
        answers.append(b.post(f"{base}/h5/auth/logout", data={"csrf_token": token}, allow_redirects=False))

    threads = [threading.Thread(target=tap, args=(b,)) for b in copies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r.status_code for r in answers) == [302] * 4
    assert who(browser, base) is None
    [record] = sessions_of(person.openid)
    assert record.revoked_at is not None
