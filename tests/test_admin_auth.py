"""Staff logins (issue 10, item 2): passwords, limits, the admin's own
cookie and server-side sessions, expiry and idleness, the open-redirect
guard, TOTP, required 2FA for owner and finance, and CSRF on every POST."""
from __future__ import annotations

import re
import secrets
from datetime import timedelta
from http.cookies import SimpleCookie

import pyotp
import pytest
import requests
from sqlalchemy import select, update

from admin_helpers import PASSWORD, log_in, make_staff, post, staff_browser, token  # noqa: F401
from conftest import needs_postgres, second_product
from test_every_page import world  # noqa: F401  (the fixture: real rows for every route argument)
from handlers.clock import now
from models import AuditEntry, Staff, StaffSession, db

TOO_MANY_FOR_ACCOUNT = "这个账号登录失败次数过多"
TOO_MANY = "登录失败次数过多"


def _landed_on_login(res: requests.Response) -> bool:
    return res.status_code == 302 and "/admin/login" in res.headers["Location"]


def _sessions(name: str) -> list[StaffSession]:
    db.session.rollback()
    return list(db.session.scalars(select(StaffSession).join(Staff).where(Staff.name == name)))


# -- passwords and limits -------------------------------------------------------------

def test_login_wrong_password_and_unknown_name_say_the_same(app, base, make_staff):
    make_staff("boss")
    b = requests.Session()
    for name, password in (("boss", "wrong password!"), ("nobody", PASSWORD), ("", ""), ("boss", "")):
        res = log_in(b, base, name, password)
        assert res.status_code == 401, (name, res.status_code)
        assert ("用户名或密码错误" in res.text or "请输入" in res.text) and "fx_admin" not in res.headers.get("Set-Cookie", "")
    res = log_in(b, base, "BOSS ")  # names are not case- or space-sensitive
    assert res.status_code == 302 and res.headers["Location"].endswith("/admin/")
    assert "欢迎，boss" in b.get(f"{base}/admin/").text
    db.session.rollback()
    assert db.session.scalars(select(AuditEntry.action)).all()[-1] == "staff.login"


def test_five_failures_lock_the_account_even_for_the_right_password(app, base, make_staff):
    make_staff("boss")
    make_staff("clerk", "shipping")
    b = requests.Session()
    codes = [log_in(b, base, "boss", f"wrong password {i}").status_code for i in range(5)]
    assert codes == [401] * 5
    res = log_in(b, base, "boss")
    assert res.status_code == 429 and TOO_MANY_FOR_ACCOUNT in res.text
    assert log_in(requests.Session(), base, "Boss").status_code == 429  # the name, whoever types it
    assert log_in(requests.Session(), base, "clerk").status_code == 302  # another account is not locked


def test_successful_logins_do_not_count(app, base, make_staff):
    make_staff("boss")
    for _ in range(8):
        assert log_in(requests.Session(), base, "boss").status_code == 302


def test_twenty_failures_from_one_ip_over_different_names_lock_the_ip(app, base, make_staff):
    make_staff("boss")
    b = requests.Session()
    codes = [log_in(b, base, f"guess{i}", "wrong password").status_code for i in range(20)]
    assert codes == [401] * 20
    res = log_in(b, base, "boss")
    assert res.status_code == 429 and TOO_MANY in res.text and TOO_MANY_FOR_ACCOUNT not in res.text


# -- the cookie and the session ----------------------------------------------------------

def test_the_admin_cookie_is_its_own(app, base, make_staff):
    make_staff("boss")
    b = requests.Session()
    res = log_in(b, base, "boss")
    header = [h for h in res.raw.headers.getlist("Set-Cookie") if h.startswith("fx_admin=")]
    assert len(header) == 1, res.raw.headers.getlist("Set-Cookie")
    cookie = SimpleCookie(header[0])["fx_admin"]
    assert cookie["path"] == "/admin" and cookie["httponly"] and cookie["samesite"].lower() == "strict"
    assert int(cookie["max-age"]) == 12 * 3600
    db.session.rollback()
    stored = db.session.scalars(select(StaffSession)).one()
    assert stored.id != cookie.value and cookie.value not in stored.id  # only its hash is kept


def test_an_h5_session_does_not_open_the_admin(app, base, person, make_staff):
    buyer = person("顾客")
    assert buyer.get(f"{base}/h5/", allow_redirects=False).status_code == 200
    assert _landed_on_login(buyer.get(f"{base}/admin/", allow_redirects=False))
    # nor does the Flask session cookie of a logged-in staff member's browser without its fx_admin
    make_staff("boss")
    b = requests.Session()
    assert log_in(b, base, "boss").status_code == 302
    thief = requests.Session()
    thief.cookies.set("fx_session", b.cookies.get("fx_session"))
    assert _landed_on_login(thief.get(f"{base}/admin/", allow_redirects=False))


def test_logout_is_a_post_and_a_copied_cookie_stops_working(app, base, staff_browser):
    b = staff_browser("owner", "boss")
    assert b.get(f"{base}/admin/logout", allow_redirects=False).status_code == 405
    copy = requests.Session()
    copy.cookies.set("fx_admin", b.cookies.get("fx_admin", path="/admin"), path="/admin")
    assert copy.get(f"{base}/admin/", allow_redirects=False).status_code == 200
    res = post(b, f"{base}/admin/logout")
    assert _landed_on_login(res)
    assert _landed_on_login(copy.get(f"{base}/admin/", allow_redirects=False))
    assert [s.revoked_at is not None for s in _sessions("boss")] == [True]


def test_disabling_an_account_ends_its_open_logins(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    phone, laptop = staff_browser("operator", "amy"), requests.Session()
    assert log_in(laptop, base, "amy").status_code == 302
    amy = _sessions("amy")[0].staff_id
    assert post(boss, f"{base}/admin/staff/{amy}/disable", {"reason": "离职"}).status_code == 302
    for b in (phone, laptop):
        assert _landed_on_login(b.get(f"{base}/admin/", allow_redirects=False))
    assert all(s.revoked_at is not None for s in _sessions("amy"))


def test_changing_the_password_ends_every_login_this_one_too(app, base, staff_browser):
    b = staff_browser("finance", "money")
    other = requests.Session()
    assert log_in(other, base, "money").status_code == 302
    res = post(b, f"{base}/admin/me/password", {"old": "not it at all", "new": "a brand new secret"},
               page=f"{base}/admin/me/password")
    assert res.status_code == 200 and "原密码不正确" in res.text
    res = post(b, f"{base}/admin/me/password", {"old": PASSWORD, "new": "short"}, page=f"{base}/admin/me/password")
    assert res.status_code == 200 and "密码至少 10 个字符" in res.text
    assert other.get(f"{base}/admin/", allow_redirects=False).status_code == 200  # nothing changed yet
    res = post(b, f"{base}/admin/me/password", {"old": PASSWORD, "new": "a brand new secret"},
               page=f"{base}/admin/me/password")
    assert _landed_on_login(res)
    for browser in (b, other):
        assert _landed_on_login(browser.get(f"{base}/admin/", allow_redirects=False))
    assert log_in(requests.Session(), base, "money").status_code == 401
    assert log_in(requests.Session(), base, "money", "a brand new secret").status_code == 302


def test_a_login_expires_after_session_hours(app, base, staff_browser):
    b = staff_browser("owner", "boss")
    assert b.get(f"{base}/admin/", allow_redirects=False).status_code == 200
    db.session.execute(update(StaffSession).values(expires_at=now() - timedelta(seconds=1)))
    db.session.commit()
    assert _landed_on_login(b.get(f"{base}/admin/", allow_redirects=False))


def test_a_login_ends_after_idle_minutes_and_activity_keeps_it(app, base, staff_browser, settings):
    b = staff_browser("owner", "boss")
    idle = settings["admin"]["idle_minutes"]
    # nearly idle: a page view refreshes last_seen_at and the login lives on
    db.session.execute(update(StaffSession).values(last_seen_at=now() - timedelta(minutes=idle - 1)))
    db.session.commit()
    assert b.get(f"{base}/admin/", allow_redirects=False).status_code == 200
    assert now() - _sessions("boss")[0].last_seen_at < timedelta(minutes=1)
    db.session.execute(update(StaffSession).values(last_seen_at=now() - timedelta(minutes=idle, seconds=1)))
    db.session.commit()
    assert _landed_on_login(b.get(f"{base}/admin/", allow_redirects=False))


def test_unknown_and_malformed_cookies_are_just_logged_out(app, base):
    for value in ("", "x", secrets.token_urlsafe(32), "a" * 500, "%00%ff"):
        b = requests.Session()
        b.cookies.set("fx_admin", value, path="/admin")
        assert _landed_on_login(b.get(f"{base}/admin/", allow_redirects=False)), value


def test_htmx_request_without_a_login_is_told_where_to_go(app, base):
    res = requests.get(f"{base}/admin/", headers={"HX-Request": "true"}, allow_redirects=False)
    assert res.status_code == 401 and "/admin/login" in res.headers["HX-Redirect"]


@pytest.mark.parametrize("target", ["https://evil.example", "//evil.example/admin", "/\\evil.example",
                                    "https:/evil.example", "/h5/", "javascript:alert(1)", "/admin\\@evil.example"])
def test_next_never_leaves_the_admin(app, base, make_staff, target):
    make_staff("boss")
    b = requests.Session()
    page = b.get(f"{base}/admin/login", params={"next": target})
    res = b.post(page.url, data={"csrf_token": token(page.text), "name": "boss", "password": PASSWORD},
                 allow_redirects=False)
    assert res.status_code == 302 and res.headers["Location"] == "/admin/", (target, res.headers["Location"])


def test_next_inside_the_admin_is_followed(app, base, make_staff):
    make_staff("boss")
    b = requests.Session()
    res = b.get(f"{base}/admin/audit?actor=boss")
    assert res.url.startswith(f"{base}/admin/login?next=")
    res = b.post(res.url, data={"csrf_token": token(res.text), "name": "boss", "password": PASSWORD},
                 allow_redirects=False)
    assert res.headers["Location"] == "/admin/audit?actor=boss"


# -- TOTP ----------------------------------------------------------------------------------

def _secret_on(page: str) -> str:
    found = re.search(r"\b([A-Z2-7]{32})\b", page)
    assert found, "no TOTP secret on the setup page"
    return found.group(1)


def _set_up_2fa(b: requests.Session, base: str) -> pyotp.TOTP:
    page = b.get(f"{base}/admin/me/2fa")
    assert page.status_code == 200
    totp = pyotp.TOTP(_secret_on(page.text))
    res = post(b, f"{base}/admin/me/2fa", {"code": "000000" if totp.now() != "000000" else "111111"},
               page=f"{base}/admin/me/2fa")
    assert res.status_code == 200 and "动态码不正确" in res.text
    res = post(b, f"{base}/admin/me/2fa", {"code": totp.now()}, page=f"{base}/admin/me/2fa")
    assert res.status_code == 302, res.text
    return totp


def test_totp_set_up_then_needed_and_a_code_is_good_once(app, base, staff_browser):
    b = staff_browser("owner", "boss")
    totp = _set_up_2fa(b, base)
    db.session.rollback()
    assert db.session.scalars(select(Staff).where(Staff.name == "boss")).one().has_2fa
    assert "staff.2fa_on" in db.session.scalars(select(AuditEntry.action)).all()
    assert "已开启" in b.get(f"{base}/admin/me/2fa").text

    res = log_in(requests.Session(), base, "boss")
    assert res.status_code == 401 and "请输入身份验证器上的 6 位动态码" in res.text
    wrong = f"{(int(totp.now()) + 1) % 1000000:06d}"
    res = log_in(requests.Session(), base, "boss", code=wrong)
    assert res.status_code == 401 and "动态码不正确" in res.text
    res = log_in(requests.Session(), base, "boss", code=totp.now())  # the code just used to set it up
    assert res.status_code == 401 and "已经用过" in res.text
    later = totp.at(now() + timedelta(seconds=30))  # the next code: one step of clock drift is allowed
    assert log_in(requests.Session(), base, "boss", code=later).status_code == 302
    res = log_in(requests.Session(), base, "boss", code=later)
    assert res.status_code == 401 and "已经用过" in res.text
    assert log_in(requests.Session(), base, "boss", "wrong password", code=later).status_code == 401


def _client_log_in(client, name: str, code: str = ""):
    page = client.get("/admin/login")
    return client.post("/admin/login", data={"csrf_token": token(page.get_data(as_text=True)), "name": name,
                                             "password": PASSWORD, "code": code})


def test_require_2fa_sends_owner_and_finance_to_set_up_first(app, settings, make_staff):
    for name, role in (("boss", "owner"), ("money", "finance"), ("amy", "operator"), ("packer", "shipping")):
        make_staff(name, role)
    with second_product(settings, admin={"require_2fa": True}) as strict:
        paths = sorted(r.rule for r in strict.url_map.iter_rules() if r.rule.startswith("/admin") and not r.arguments
                       and "GET" in r.methods and r.endpoint not in ("admin.login", "admin.two_factor"))
        assert "/admin/" in paths and "/admin/audit" in paths
        for name, forced in (("boss", True), ("money", True), ("amy", False), ("packer", False)):
            client = strict.test_client()
            assert _client_log_in(client, name).status_code == 302
            for path in paths:
                res = client.get(path)
                if forced:
                    assert res.status_code == 302 and res.headers["Location"].endswith("/admin/me/2fa"), (name, path)
                else:
                    assert not (res.status_code == 302 and "/admin/me/2fa" in res.headers.get("Location", "")), \
                        (name, path)
            if not forced:
                continue
            page = client.get("/admin/me/2fa").get_data(as_text=True)
            totp = pyotp.TOTP(_secret_on(page))
            res = client.post("/admin/me/2fa", data={"csrf_token": token(page), "code": totp.now()})
            assert res.status_code == 302 and res.headers["Location"].endswith("/admin/")
            assert client.get("/admin/").status_code == 200  # this very login is now complete
            # next time the code is asked for at login
            again = strict.test_client()
            assert _client_log_in(again, name).status_code == 401
            assert _client_log_in(again, name, totp.at(now() + timedelta(seconds=30))).status_code == 302
            assert again.get("/admin/").status_code == 200


def test_without_require_2fa_nobody_is_forced(app, base, staff_browser):
    for role in ("owner", "finance"):
        assert staff_browser(role).get(f"{base}/admin/", allow_redirects=False).status_code == 200


# -- CSRF on every POST -----------------------------------------------------------------------

def _post_rules(app):
    return sorted((r for r in app.url_map.iter_rules() if r.rule.startswith("/admin") and "POST" in r.methods),
                  key=lambda r: r.rule)


# What the statistics page stores of the days it counts: a cache of other rows, not a change.
STATS_CACHES = {"daily_stats", "daily_unit_stats", "monthly_unit_stats"}


def _snapshot() -> dict:
    """Every row of every table but the logins' last-seen times: "nothing changed" checked whole."""
    db.session.rollback()
    out = {}
    for table in db.metadata.sorted_tables:
        if table.name in STATS_CACHES:
            continue
        columns = [c for c in table.columns if not (table.name == "staff_sessions" and c.name == "last_seen_at")]
        query = select(*columns)
        if table.name == "audit_log":
            query = query.where(table.c.action != "export.download")  # a download is recorded on purpose
        out[table.name] = sorted(map(repr, db.session.execute(query).all()))
    return out


def test_every_admin_post_refuses_a_missing_or_forged_csrf_token(app, base, staff_browser, world):
    from test_every_page import admin_url

    rules = _post_rules(app)
    assert any(r.endpoint == "admin.logout" for r in rules) and any(r.endpoint == "admin.staff_create" for r in rules)
    owner = staff_browser("owner", "boss")
    stranger = staff_browser("owner", "other")  # a real token, from another browser's session
    foreign = token(stranger.get(f"{base}/admin/").text)
    before = _snapshot()
    problems = []
    with app.test_request_context():
        for rule in rules:
            url = base + admin_url(rule, world)
            form = {"reason": "csrf", "name": "csrf.user", "role": "owner", "password": PASSWORD, "code": "123456"}
            for how, kwargs in (("no token", {"data": form}),
                                ("forged token", {"data": {**form, "csrf_token": "IjEyMyI.forged.token"}}),
                                ("another session's token", {"data": {**form, "csrf_token": foreign}}),
                                ("forged htmx header", {"data": form, "headers": {"HX-Request": "true",
                                                                                  "X-CSRFToken": foreign}})):
                res = owner.post(url, allow_redirects=False, **kwargs)
                if res.status_code != 400:
                    problems.append(f"{res.status_code} POST {rule.rule} ({rule.endpoint}) with {how}")
                elif "页面已过期" not in res.text:
                    problems.append(f"POST {rule.rule} with {how}: 400 without the expired-page message")
    assert not problems, "\n".join(problems)
    assert owner.get(f"{base}/admin/", allow_redirects=False).status_code == 200  # not even logged out
    after = _snapshot()
    changed = [name for name in before if before[name] != after[name]]
    assert not changed, f"tables changed by refused POSTs: {changed}"


def test_an_htmx_post_with_the_header_token_works(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    staff_browser("shipping", "packer")
    packer = _sessions("packer")[0].staff_id
    res = post(boss, f"{base}/admin/staff/{packer}/disable", {"reason": "休假"}, htmx=True)
    assert res.status_code == 200 and "已停用 packer" in res.text
    res = post(boss, f"{base}/admin/logout", htmx=True)
    assert _landed_on_login(res)


@needs_postgres
def test_one_totp_code_used_by_two_logins_at_once_opens_one(app, base, staff_browser):
    from concurrent.futures import ThreadPoolExecutor

    totp = _set_up_2fa(staff_browser("owner", "boss"), base)
    code = totp.at(now() + timedelta(seconds=30))
    browsers = [requests.Session() for _ in range(4)]
    pages = [b.get(f"{base}/admin/login").text for b in browsers]
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: browsers[i].post(
            f"{base}/admin/login", data={"csrf_token": token(pages[i]), "name": "boss", "password": PASSWORD,
                                         "code": code}, allow_redirects=False).status_code, range(4)))
    assert sorted(codes) == [302, 401, 401, 401], codes
