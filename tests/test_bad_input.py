"""Bad input never makes a 5xx (issue 9, item 6): ids that are not plain
ASCII digits or do not fit an INTEGER are 404; control characters and NUL
bytes anywhere we read are a 400 with a message before any handler runs
(PostgreSQL refuses NUL in text: it used to be a 500); people's names are
escaped in the bot's texts and stripped of control characters in the CLI."""
from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from sqlalchemy import func, select

from distribution_helpers import make_distributor, make_user
from handlers import applications, catalogue, outbox
from models import Application, Order, User, db
from test_shop_pages import add, browsers, catalogue_items, checkout, csrf, guest  # noqa: F401  (fixtures)
from test_simulator import phone, phones  # noqa: F401  (fixtures)

REFUSED = "提交的内容含有不允许的控制字符"
EVIL_NAME = '<a href="http://evil.example.com">点我</a>'
ANSI_NAME = "\x1b[2J\x1b[31m红色\x1b[0m\x07小王\x1b]0;owned\x07"


def count(model) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(model))


def refused(res) -> None:
    assert res.status_code == 400, (res.status_code, res.text[:300])
    assert REFUSED in res.text


# -- ids in URLs ------------------------------------------------------------------

@pytest.mark.parametrize("raw", ["١٢", "１２", "²", "2147483648", "99999999999999999999", "-1", "1e3", " 1"])
def test_a_product_id_that_is_not_plain_ascii_digits_within_integer_is_not_found(app, guest, base, raw,
                                                                                   catalogue_items):
    res = guest.get(f"{base}/h5/p/{quote(raw)}", allow_redirects=False)
    assert res.status_code == 404, (raw, res.status_code)
    assert "页面不存在" in res.text


def test_no_route_takes_an_id_with_werkzeugs_int_converter(app):
    """int: matches any script's digits and any size; ids are <id:…>."""
    from werkzeug.routing.converters import NumberConverter

    loose = [rule.rule for rule in app.url_map.iter_rules()
             if any(isinstance(c, NumberConverter) for c in rule._converters.values())]
    assert not loose, f"use <id:…> for ids: {loose}"


def test_the_largest_integer_id_is_an_ordinary_not_found_and_a_real_id_still_works(app, guest, base,
                                                                                   catalogue_items):
    assert guest.get(f"{base}/h5/p/2147483647").status_code == 404
    assert guest.get(f"{base}/h5/p/{catalogue_items[0].id}").status_code == 200


@pytest.mark.parametrize("raw", ["١", "2147483648", "4294967296"])
def test_withdrawal_and_notification_ids_out_of_range_are_not_found(app, person, base, raw):
    me = person("小王")
    assert me.get(f"{base}/h5/withdrawals/{quote(raw)}/confirm", allow_redirects=False).status_code == 404
    token = csrf(me.get(f"{base}/h5/apply").text)
    res = me.post(f"{base}/h5/notifications/{quote(raw)}/open", data={"csrf_token": token}, allow_redirects=False)
    assert res.status_code == 404


def test_product_ids_in_forms_must_be_ascii_digits(app, guest, base, catalogue_items):
    gift = catalogue_items[0]
    assert add(guest, base, gift.id).status_code == 302
    token = csrf(guest.get(f"{base}/h5/cart").text)
    for raw in ("²", "١", "１"):  # '²'.isdigit() is true and int('²') raises
        res = guest.post(f"{base}/h5/cart/remove", data={"csrf_token": token, "product_id": raw},
                         allow_redirects=False)
        assert res.status_code == 302, raw
        res = guest.post(f"{base}/h5/cart/add", data={"csrf_token": token, "product_id": raw, "qty": "1"},
                         allow_redirects=False)
        assert res.status_code in (400, 404), raw
    assert gift.name in guest.get(f"{base}/h5/cart").text  # still in the cart


def test_a_distributors_selection_with_odd_digits_is_refused_not_a_crash(app, person, base, catalogue_items):
    me = person("店主")
    applications.approve_application(_applied(me.openid).id, actor=applications.Actor("test"))
    outbox.commit()
    token = csrf(me.get(f"{base}/h5/my-products").text)
    res = me.post(f"{base}/h5/my-products", data={"csrf_token": token, "product_id": ["²"]})
    assert res.status_code == 400 and "所选商品不存在" in res.text


def _applied(openid: str) -> Application:
    user = db.session.scalars(select(User).where(User.openid == openid)).one()
    application = applications.apply_for_distributor(user, "张三", "13800138000", "想分享好东西")
    outbox.commit()
    return application


# -- control characters -----------------------------------------------------------

@pytest.mark.parametrize("path", ["/h5/u/ab%00cd", "/h5/u/ab%1bcd", "/h5/orders/2026%00", "/h5/%00",
                                  "/sandbox/avatar/o%00x.svg"])
def test_nul_or_control_character_in_the_path_is_refused(app, guest, base, path):
    refused(guest.get(base + path, allow_redirects=False))


@pytest.mark.parametrize("query", ["tab=%00", "tab=paid%0a", "%00=1", "next=%7f"])
def test_nul_or_control_character_in_the_query_is_refused(app, guest, base, query):
    refused(guest.get(f"{base}/h5/shop?{query}", allow_redirects=False))


def test_the_refusal_is_a_chinese_page(app, guest, base):
    res = guest.get(f"{base}/h5/u/x%00", allow_redirects=False)
    refused(res)
    assert res.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("field", ["name", "mobile", "address", "note"])
def test_nul_in_a_checkout_field_is_refused_and_no_order_is_made(app, guest, base, catalogue_items, field):
    assert add(guest, base, catalogue_items[0].id).status_code == 302
    refused(checkout(guest, base, **{field: "李雷\x00"}))
    assert count(Order) == 0
    assert "/h5/orders/" in checkout(guest, base).headers["Location"]  # the same cart, typed cleanly, works


def test_a_line_break_is_allowed_in_the_address_textarea_but_not_in_the_name(app, guest, base, catalogue_items):
    assert add(guest, base, catalogue_items[0].id).status_code == 302
    refused(checkout(guest, base, name="李\n雷"))
    res = checkout(guest, base, address="浙江省杭州市西湖区\r\n文三路 100 号\t2 单元")
    assert res.status_code == 302 and "/h5/orders/" in res.headers["Location"]
    assert count(Order) == 1


def test_nul_in_the_application_form_is_refused_and_nothing_is_written(app, person, base):
    me = person("申请人")
    token = csrf(me.get(f"{base}/h5/apply").text)
    form = {"csrf_token": token, "real_name": "张三", "mobile": "13800138000", "reason": "想分享好东西"}
    for field in ("real_name", "mobile", "reason", "invite_code"):
        refused(me.post(f"{base}/h5/apply", data={**form, field: "张三\x00"}, allow_redirects=False))
    refused(me.post(f"{base}/h5/apply", data={**form, "reason": "好东西\x1b[31m"}, allow_redirects=False))
    assert count(Application) == 0
    res = me.post(f"{base}/h5/apply", data={**form, "reason": "第一行\r\n第二行"}, allow_redirects=False)
    assert res.status_code == 302
    assert count(Application) == 1


def test_control_characters_in_json_strings_are_refused_as_json(app, client):
    for body in ({"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "a\u0000b"}}},
                 {"touser\u0000": "x"}, {"list": ["ok", "bad\u001b"]}):
        res = client.post("/sandbox/api/cgi-bin/qrcode/create?access_token=x", data=json.dumps(body),
                          content_type="application/json")
        assert res.status_code == 400 and "control character" in res.get_json()["error"]
        # wechatpy posts its JSON without a content type: read as JSON all the same.
        res = client.post("/sandbox/api/cgi-bin/qrcode/create?access_token=x", data=json.dumps(body))
        assert res.status_code == 400 and "control character" in res.get_json()["error"]


def test_line_breaks_in_json_text_are_ordinary(app, client):
    body = {"touser": "nobody", "msgtype": "text", "text": {"content": "第一行\n第二行"}}
    res = client.post("/sandbox/api/cgi-bin/message/custom/send?access_token=x", data=json.dumps(body))
    assert res.status_code != 400 or "control character" not in res.text


def test_the_webhook_and_payment_notification_bodies_are_left_to_their_endpoints(app, client):
    # Their own checks answer (signature, XML), not the door: they must see what was sent.
    for path, data in (("/pay/alipay/notify", "out_trade_no=1%00&sign=x"),
                       ("/pay/wechatpay/notify", '{"id": "\\u0000"}'),
                       ("/wx", "<xml><Content>\x00</Content></xml>")):
        res = client.post(path, data=data, content_type="application/x-www-form-urlencoded")
        assert "control character" not in res.get_data(as_text=True), path
        assert REFUSED not in res.get_data(as_text=True), path
        assert res.status_code < 500, path


# -- names in the bot's texts -----------------------------------------------------

def _links(text: str) -> list[str]:
    return re.findall(r'<a href="([^"]*)"', text)


def test_a_nickname_with_a_link_arrives_as_text_in_the_welcome(app, wechat, sandbox_user, base):
    owner = make_distributor(EVIL_NAME)
    newcomer = sandbox_user("小美", subscribed=False)
    delivery = wechat.push(wechat.subscribe(newcomer.openid, owner.unit.scene))
    assert delivery.status == 200, delivery.body
    text = delivery.reply["Content"]
    assert "&lt;a href=&quot;http://evil.example.com&quot;&gt;点我&lt;/a&gt; 邀请你来逛逛" in text
    assert "evil.example.com\"" not in text
    assert _links(text) and all(link.startswith(base) for link in _links(text))


def test_the_followers_own_nickname_and_the_referrers_are_escaped_everywhere(app, wechat, sandbox_user, base):
    owner = make_distributor(EVIL_NAME)
    me = sandbox_user("x")
    make_user(EVIL_NAME, openid=me.openid)
    for push in (wechat.subscribe(me.openid), wechat.scan(me.openid, owner.unit.scene),
                 wechat.text(me.openid, owner.unit.invite_code)):
        delivery = wechat.push(push)
        text = delivery.reply["Content"]
        assert "http://evil.example.com" not in _links(text)
        assert all(link.startswith(base) for link in _links(text)), text


def test_a_rejection_reason_and_the_shop_name_are_escaped_in_commands(app, wechat, sandbox_user, base):
    me = sandbox_user("x")
    user = make_user("x", openid=me.openid)
    application = applications.apply_for_distributor(user, "张三", "13800138000", "想分享好东西")
    outbox.commit()
    applications.reject_application(application.id, '资料不全 <a href="http://evil.example.com">重填</a>',
                                    actor=applications.Actor("test"))
    outbox.commit()
    text = wechat.push(wechat.text(me.openid, "申请分销")).reply["Content"]
    assert "&lt;a href=" in text and all(link.startswith(base) for link in _links(text))
    owner = make_distributor(EVIL_NAME)
    text = wechat.push(wechat.text(owner.user.openid, "分销中心")).reply["Content"]
    assert text.startswith("&lt;a href=") and all(link.startswith(base) for link in _links(text))


def test_the_simulator_shows_an_escaped_nickname_as_the_text_it_is(app, phone, base):
    owner = make_distributor(EVIL_NAME + " & 朋友")
    phone.new_user("小美")
    phone.do("scan", scene=owner.unit.scene)
    chat = phone.chat()
    # The browser shows the characters <a href="…">点我</a> & 朋友, not a link and not entities.
    assert "&lt;a href=&quot;http://evil.example.com&quot;&gt;点我&lt;/a&gt; &amp; 朋友 邀请你来逛逛" in chat
    assert 'href="http://evil.example.com' not in chat and "&amp;lt;" not in chat
    assert phone.links()  # the real links are still links


# -- control characters in the CLI's output -------------------------------------------

def test_cli_listings_strip_terminal_escape_codes(app):
    user = make_user(ANSI_NAME)
    applications.apply_for_distributor(user, "张三", "13800138000", "想分享\x1b[8m好东西")
    catalogue.add_product("红枣\x1b[5m闪烁", 100, 1)
    outbox.commit()
    runner = app.test_cli_runner()
    for args in (["applications", "list"], ["products", "list"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output, args
    assert "红色小王" in runner.invoke(args=["applications", "list"]).output
    assert "红枣闪烁" in runner.invoke(args=["products", "list"]).output


def test_cli_listing_keeps_one_line_per_row(app):
    user = make_user("多\n行\t名字")
    applications.apply_for_distributor(user, "张三", "13800138000", "第一行\r\n第二行")
    outbox.commit()
    output = app.test_cli_runner().invoke(args=["applications", "list"]).output
    assert output.count("\n") == 1 and "多 行 名字" in output and "第一行 第二行" in output
    assert output.count("\t") == 5


# -- a fuzz-style walk over the H5 pages ---------------------------------------------

HOSTILE = ["١٢", "2147483648", "-1", "0", "%00", "%1b%5b31m", "%E2%80%AE", "x" * 3000, "%27%22%3Cscript%3E",
           "%ff%fe", "..%2F..%2Fetc", "%F0%9F%98%80", "null", "[]"]


def _h5_routes(app) -> list[tuple[str, str, list[str]]]:
    found = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/h5/") or rule.endpoint == "h5.static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, list(rule.arguments)))
    return found


def _fill(rule: str, value: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?[a-z_]+>", value, rule)


@pytest.mark.slow
def test_no_hostile_value_anywhere_on_the_h5_pages_makes_a_5xx(app, person, guest, base, catalogue_items):
    me = person("路人")
    routes = _h5_routes(app)
    assert len(routes) > 15
    failures = []
    for browser in (guest, me):
        token = csrf(browser.get(f"{base}/h5/p/{catalogue_items[0].id}").text)
        for method, rule, arguments in routes:
            for value in HOSTILE:
                url = base + _fill(rule, value) if arguments else base + rule
                params = f"?tab={value}&next={value}&t={value}&sent={value}&scope={value}&state={value}"
                if method == "GET":
                    res = browser.get(url + params, allow_redirects=False)
                else:
                    raw = value.replace("%00", "\x00").replace("%1b", "\x1b")
                    data = {"csrf_token": token, "product_id": raw, "qty": raw, "name": raw, "mobile": raw,
                            "address": raw, "note": raw, "real_name": raw, "reason": raw, "invite_code": raw,
                            "amount": raw, "request_key": raw, "checkout_key": raw, "channel": raw}
                    res = browser.post(url, data=data, allow_redirects=False)
                if res.status_code >= 500:
                    failures.append((browser is me, method, url[:120], res.status_code))
    assert not failures, failures


def test_the_sandbox_token_endpoint_takes_a_non_ascii_secret_as_wrong_not_a_crash(app, client, settings):
    res = client.get("/sandbox/api/cgi-bin/token", query_string={
        "grant_type": "client_credential", "appid": settings["wechat"]["appid"], "secret": "密钥١٢"})
    assert res.status_code < 500 and res.get_json()["errcode"] != 0
