"""The sandbox plays api.weixin.qq.com over real HTTP: WeChat's request and
response formats and error codes, as the product meets them through wechatpy,
and as a raw HTTP client sees them."""
from __future__ import annotations

import hashlib
import io
from datetime import timedelta

import pytest
import requests
from PIL import Image
from sqlalchemy import select
from wechatpy.exceptions import WeChatClientException

from app import create_app
from app.config import build
from app.extensions import db, redis_store
from handlers.clock import now
from models import SandboxMessage, SandboxQRCode, SandboxUser
from sandbox import state
from tests.conftest import make_raw_config
from wxbot.client import SharedTokenClient, wechat_client
from wxbot.menu import load_menu


@pytest.fixture
def api(settings) -> str:
    return settings["wechat"]["api_base"]


@pytest.fixture
def http():
    with requests.Session() as s:
        yield s


@pytest.fixture
def wx(app) -> SharedTokenClient:
    """The product's own client, as its jobs use it."""
    return wechat_client()


@pytest.fixture
def token(api, settings, http) -> str:
    w = settings["wechat"]
    res = http.get(f"{api}/cgi-bin/token",
                   params={"grant_type": "client_credential", "appid": w["appid"], "secret": w["secret"]})
    return res.json()["access_token"]


@pytest.fixture
def phone(settings):
    """A browser on the simulator page, to see what WeChat users see."""
    base = settings["app"]["base_url"]

    def chat_of(openid: str) -> str:
        with requests.Session() as s:
            s.post(f"{base}/sandbox/switch", data={"openid": openid})
            page = s.get(f"{base}/sandbox/")
            assert page.status_code == 200
            return page.text

    return chat_of


def png(size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), "red").save(buf, "PNG")
    return buf.getvalue()


def errcode(exc_info) -> int:
    return exc_info.value.errcode


def fresh(model, **by):
    """What the server has committed (end this thread's snapshot first)."""
    db.session.rollback()
    return db.session.scalars(select(model).filter_by(**by)).one_or_none()


# -- access token ------------------------------------------------------------

def test_token_is_issued_in_wechats_format(api, settings, http):
    w = settings["wechat"]
    res = http.get(f"{api}/cgi-bin/token",
                   params={"grant_type": "client_credential", "appid": w["appid"], "secret": w["secret"]})
    assert res.status_code == 200
    body = res.json()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == 7200
    ticket = http.get(f"{api}/cgi-bin/ticket/getticket",
                      params={"access_token": body["access_token"], "type": "jsapi"}).json()
    assert ticket["errcode"] == 0


@pytest.mark.parametrize("change, code", [
    ({"appid": "wx0000000000000000"}, 40013),
    ({"secret": "0" * 32}, 40125),
    ({"secret": ""}, 40125),
    ({"grant_type": "authorization_code"}, 40002),
    ({"grant_type": None}, 40002),
])
def test_token_refused_with_wechats_error_codes(api, settings, http, change, code):
    w = settings["wechat"]
    params = {"grant_type": "client_credential", "appid": w["appid"], "secret": w["secret"], **change}
    res = http.get(f"{api}/cgi-bin/token", params={k: v for k, v in params.items() if v is not None})
    assert res.status_code == 200  # WeChat answers errors with HTTP 200
    body = res.json()
    assert body["errcode"] == code
    assert body["errmsg"]
    assert "access_token" not in body


def test_client_with_a_wrong_secret_gets_40125(app, settings):
    w = settings["wechat"]
    client = SharedTokenClient(w["appid"], "f" * 32, w["api_base"], redis_store.conn)
    with pytest.raises(WeChatClientException) as exc:
        client.menu.get()
    assert errcode(exc) == 40125


def test_previous_token_lives_through_a_grace_period(api, settings, http, token):
    w = settings["wechat"]
    newer = http.get(f"{api}/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": w["appid"], "secret": w["secret"]}).json()["access_token"]
    assert newer != token
    for t in (token, newer):
        assert http.get(f"{api}/cgi-bin/ticket/getticket",
                        params={"access_token": t, "type": "jsapi"}).json()["errcode"] == 0


def test_revoked_token_gives_40001_and_the_client_refreshes_once(wx, api, http, settings, sandbox_user):
    person = sandbox_user()
    assert wx.user.get(person.openid)["openid"] == person.openid
    first = wx.access_token
    state.revoke_tokens(settings["wechat"]["appid"])
    body = http.get(f"{api}/cgi-bin/user/info", params={"access_token": first, "openid": person.openid}).json()
    assert body["errcode"] == 40001

    info = wx.user.get(person.openid)  # 40001 -> one refresh -> retried

    assert info["subscribe"] == 1
    second = wx.access_token
    assert second != first
    # Exactly one token was issued since the revocation (a second refresh
    # would have left the first replacement alive in its grace period).
    assert len(redis_store.conn.keys("sandbox:token:*")) == 1
    assert wechat_client().user.get(person.openid)["openid"] == person.openid
    assert wx.access_token == second  # shared through Redis, no new fetch


@pytest.mark.parametrize("method, path", [
    ("get", "/cgi-bin/user/info?openid=o123"),
    ("post", "/cgi-bin/qrcode/create"),
    ("post", "/cgi-bin/message/template/send"),
    ("post", "/cgi-bin/message/custom/send"),
    ("post", "/cgi-bin/media/upload?type=image"),
    ("post", "/cgi-bin/menu/create"),
    ("get", "/cgi-bin/menu/get"),
    ("get", "/cgi-bin/ticket/getticket?type=jsapi"),
])
def test_missing_access_token_is_41001(api, http, method, path):
    res = http.request(method, f"{api}{path}", data=b"{}")
    assert res.status_code == 200
    assert res.json()["errcode"] == 41001


def test_unknown_access_token_is_40001(api, http):
    body = http.get(f"{api}/cgi-bin/menu/get", params={"access_token": "not-a-token"}).json()
    assert body["errcode"] == 40001


# -- QR codes ----------------------------------------------------------------

def permanent(scene: str) -> dict:
    return {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}


def test_permanent_code_is_the_same_for_the_same_scene(wx, api, http):
    first = wx.qrcode.create(permanent("dist_42"))
    again = wx.qrcode.create(permanent("dist_42"))
    other = wx.qrcode.create(permanent("dist_43"))

    assert again["ticket"] == first["ticket"] and again["url"] == first["url"]
    assert other["ticket"] != first["ticket"] and other["url"] != first["url"]
    assert "expire_seconds" not in first
    assert first["url"].startswith("http://weixin.qq.com/q/")

    shown = http.get(f"{api}/cgi-bin/showqrcode", params={"ticket": first["ticket"]})
    assert shown.status_code == 200
    assert shown.headers["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(shown.content))
    assert image.format == "PNG" and image.width == image.height >= 100


def test_temporary_code_expires(wx, api, http):
    data = {"action_name": "QR_STR_SCENE", "expire_seconds": 600,
            "action_info": {"scene": {"scene_str": "share_1"}}}
    first = wx.qrcode.create(data)
    second = wx.qrcode.create(data)

    assert 599 <= first["expire_seconds"] <= 600
    assert second["ticket"] != first["ticket"]  # each temporary code is new
    too_long = wx.qrcode.create({**data, "expire_seconds": 40 * 86400})
    assert too_long["expire_seconds"] == 2_592_000  # at most 30 days
    assert http.get(f"{api}/cgi-bin/showqrcode", params={"ticket": first["ticket"]}).status_code == 200

    code = fresh(SandboxQRCode, ticket=first["ticket"])
    code.expires_at = now() - timedelta(seconds=1)  # time passes
    db.session.commit()
    assert http.get(f"{api}/cgi-bin/showqrcode", params={"ticket": first["ticket"]}).status_code == 404


@pytest.mark.parametrize("scene", ["", "x" * 65])
@pytest.mark.parametrize("action", ["QR_LIMIT_STR_SCENE", "QR_STR_SCENE"])
def test_scene_str_must_be_1_to_64_characters(wx, scene, action):
    with pytest.raises(WeChatClientException) as exc:
        wx.qrcode.create({"action_name": action, "action_info": {"scene": {"scene_str": scene}}})
    assert errcode(exc) == 40053


def test_scene_str_of_64_characters_is_fine(wx):
    assert wx.qrcode.create(permanent("x" * 64))["ticket"]


@pytest.mark.parametrize("action", ["QR_FOREVER", "", None])
def test_unknown_action_is_40052(wx, action):
    with pytest.raises(WeChatClientException) as exc:
        wx.qrcode.create({"action_name": action, "action_info": {"scene": {"scene_str": "a"}}})
    assert errcode(exc) == 40052


@pytest.mark.parametrize("path, body, code", [
    ("qrcode/create", {"action_name": "QR_LIMIT_STR_SCENE", "action_info": "dist_1"}, 40053),
    ("qrcode/create", {"action_name": "QR_STR_SCENE", "action_info": {"scene": "dist_1"}}, 40053),
    ("qrcode/create", {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": 42}}}, 40053),
    ("qrcode/create", {"action_name": "QR_STR_SCENE", "expire_seconds": "600",
                       "action_info": {"scene": {"scene_str": "a"}}}, 40053),
    ("message/template/send", {"touser": 123, "template_id": "t", "data": {}}, 40003),
    ("message/custom/send", {"touser": ["o1"], "msgtype": "text", "text": {"content": "hi"}}, 40003),
    ("menu/create", {"button": "商城"}, 40016),
    ("menu/create", [], 47001),
])
def test_malformed_json_gets_an_error_code_not_a_crash(api, http, token, path, body, code):
    res = http.post(f"{api}/cgi-bin/{path}", params={"access_token": token}, json=body)
    assert res.status_code == 200
    assert res.json()["errcode"] == code


def test_showqrcode_of_unknown_ticket_is_404(api, http):
    assert http.get(f"{api}/cgi-bin/showqrcode", params={"ticket": "gQnothing"}).status_code == 404
    assert http.get(f"{api}/cgi-bin/showqrcode").status_code == 404


# -- users -------------------------------------------------------------------

def test_user_info_has_no_nickname_or_avatar_since_2021(wx, sandbox_user):
    person = sandbox_user("小王")
    info = wx.user.get(person.openid)
    assert info["subscribe"] == 1
    assert info["openid"] == person.openid
    assert abs(info["subscribe_time"] - int(person.subscribe_time.timestamp())) <= 1
    assert "nickname" not in info and "headimgurl" not in info


def test_user_info_of_a_non_follower_says_subscribe_0(wx, sandbox_user):
    person = sandbox_user("小李", subscribed=False)
    info = wx.user.get(person.openid)
    assert info == {"subscribe": 0, "openid": person.openid}


def test_user_info_of_an_unknown_openid_is_40003(wx):
    with pytest.raises(WeChatClientException) as exc:
        wx.user.get("o" + "x" * 27)
    assert errcode(exc) == 40003


# -- template messages -------------------------------------------------------

def test_template_message_is_kept_and_shown_to_that_user_only(wx, sandbox_user, settings, phone):
    alice, bob = sandbox_user("小红"), sandbox_user("小明")
    url = f"{settings['app']['base_url']}/h5/center"
    res = wx.message.send_template(alice.openid, "OrderPaid_01",
                                   {"thing1": {"value": "蓝色保温杯"}, "amount2": {"value": "¥59.00"}}, url=url)
    assert res["errcode"] == 0 and res["msgid"]

    kept = fresh(SandboxMessage, id=res["msgid"])
    assert kept.openid == alice.openid and kept.direction == "template"
    chat = phone(alice.openid)
    assert "OrderPaid_01" in chat and "蓝色保温杯" in chat and "¥59.00" in chat
    assert "/sandbox/open?url=" in chat  # the card's link opens the H5 page as Alice
    assert "蓝色保温杯" not in phone(bob.openid)


def test_template_message_to_a_non_follower_is_43004(wx, sandbox_user):
    person = sandbox_user(subscribed=False)
    with pytest.raises(WeChatClientException) as exc:
        wx.message.send_template(person.openid, "OrderPaid_01", {"thing1": {"value": "x"}})
    assert errcode(exc) == 43004
    assert fresh(SandboxMessage, openid=person.openid) is None


@pytest.mark.parametrize("template_id", ["", "bad id!", "t" * 65])
def test_bad_template_id_is_40037(wx, sandbox_user, template_id):
    person = sandbox_user()
    with pytest.raises(WeChatClientException) as exc:
        wx.message.send_template(person.openid, template_id, {"thing1": {"value": "x"}})
    assert errcode(exc) == 40037


@pytest.mark.parametrize("data", [{"thing1": "蓝色保温杯"}, {"thing1": {"color": "#000"}}, ["x"]])
def test_bad_template_data_is_47001(wx, sandbox_user, data):
    person = sandbox_user()
    with pytest.raises(WeChatClientException) as exc:
        wx.message.send_template(person.openid, "OrderPaid_01", data)
    assert errcode(exc) == 47001
    assert fresh(SandboxMessage, openid=person.openid) is None


def test_template_body_that_is_not_json_is_47001(api, http, token):
    res = http.post(f"{api}/cgi-bin/message/template/send", params={"access_token": token}, data=b"<xml/>")
    assert res.json()["errcode"] == 47001


# -- customer-service messages -----------------------------------------------

def test_custom_message_inside_48_hours_is_kept_and_shown(wx, sandbox_user, phone):
    person = sandbox_user("小王")
    assert wx.message.send_text(person.openid, "您的订单已发货")["errcode"] == 0
    chat = phone(person.openid)
    assert "客服消息" in chat and "您的订单已发货" in chat


@pytest.mark.parametrize("hours_ago, subscribed", [(49, True), (None, True), (1, False)])
def test_custom_message_outside_the_window_is_45015(wx, sandbox_user, hours_ago, subscribed):
    person = sandbox_user(subscribed=subscribed)
    user = fresh(SandboxUser, openid=person.openid)
    user.last_message_at = now() - timedelta(hours=hours_ago) if hours_ago else None
    db.session.commit()
    with pytest.raises(WeChatClientException) as exc:
        wx.message.send_text(person.openid, "您的订单已发货")
    assert errcode(exc) == 45015
    assert fresh(SandboxMessage, openid=person.openid) is None


# -- media -------------------------------------------------------------------

def test_uploaded_image_gets_a_media_id_and_can_be_sent(wx, sandbox_user, settings, phone, http):
    picture = png()
    res = wx.media.upload("image", ("poster.png", picture, "image/png"))
    assert res["type"] == "image" and res["media_id"] and res["created_at"]

    person = sandbox_user()
    assert wx.message.send_image(person.openid, res["media_id"])["errcode"] == 0
    chat = phone(person.openid)
    src = f"/sandbox/media/{res['media_id']}"
    assert src in chat
    shown = http.get(settings["app"]["base_url"] + src)
    assert shown.headers["Content-Type"] == "image/png" and shown.content == picture


def test_upload_that_is_not_an_image_is_40005(wx):
    with pytest.raises(WeChatClientException) as exc:
        wx.media.upload("image", ("poster.png", b"just some text", "image/png"))
    assert errcode(exc) == 40005


@pytest.mark.parametrize("kind", ["file", "pdf", ""])
def test_upload_of_an_unknown_media_type_is_40004(wx, kind):
    with pytest.raises(WeChatClientException) as exc:
        wx.media.upload(kind, ("poster.png", png(), "image/png"))
    assert errcode(exc) == 40004


def test_image_message_with_an_unknown_media_id_is_40007(wx, sandbox_user):
    person = sandbox_user()
    with pytest.raises(WeChatClientException) as exc:
        wx.message.send_image(person.openid, "nope")
    assert errcode(exc) == 40007


# -- menu --------------------------------------------------------------------

def test_repository_menu_is_accepted_and_read_back(wx):
    assert wx.menu.get() is None  # 46003 "menu no exist", which wechatpy turns into None
    menu = load_menu()
    assert wx.menu.create(menu)["errcode"] == 0
    assert wx.menu.get() == {"menu": menu}


def click(name: str, key: str = "K") -> dict:
    return {"type": "click", "name": name, "key": key}


@pytest.mark.parametrize("menu, code", [
    ({"button": [click("一"), click("二"), click("三"), click("四")]}, 40016),
    ({"button": []}, 40016),
    ({}, 40016),
    ({"button": [{"name": "分销", "sub_button": [click(f"子{i}") for i in range(6)]}]}, 40023),
    ({"button": [click("这是一个太长的菜单名")]}, 40018),
    ({"button": [click("")]}, 40018),
    ({"button": [{"type": "bogus", "name": "商城", "key": "SHOP"}]}, 40017),
    ({"button": [click("商城", "")]}, 40019),
    ({"button": [{"type": "view", "name": "商城", "url": "ftp://example.com/"}]}, 40055),
])
def test_menu_beyond_wechats_limits_is_refused(wx, menu, code):
    with pytest.raises(WeChatClientException) as exc:
        wx.menu.create(menu)
    assert errcode(exc) == code
    assert wx.menu.get() is None  # nothing was published


# -- JS-SDK ------------------------------------------------------------------

def test_jsapi_ticket_is_issued_cached_and_signs_wx_config(wx, api, http, token):
    ticket = wx.jsapi_ticket()
    assert ticket and wechat_client().jsapi_ticket() == ticket

    config = wx.jsapi_config("http://127.0.0.1/h5/shop?x=1#top")
    expected = hashlib.sha1(
        f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}&timestamp={config['timestamp']}"
        f"&url=http://127.0.0.1/h5/shop?x=1".encode()).hexdigest()
    assert config["signature"] == expected
    assert config["appId"] == wx.appid

    raw = http.get(f"{api}/cgi-bin/ticket/getticket", params={"access_token": token, "type": "jsapi"}).json()
    assert raw["errcode"] == 0 and raw["expires_in"] == 7200 and raw["ticket"]
    bad = http.get(f"{api}/cgi-bin/ticket/getticket", params={"access_token": token, "type": "nope"}).json()
    assert bad["errcode"] == 40002


# -- sandbox off -------------------------------------------------------------

def test_without_sandbox_the_platform_does_not_exist(tmp_path):
    raw = make_raw_config("https://shop.example.com", f"sqlite:///{tmp_path / 'off.sqlite'}",
                          wechat={"sandbox": False, "api_base": "http://127.0.0.1:9/wechat"})
    off = create_app(build(raw, {}, "tests"))
    try:
        assert off.config["SETTINGS"]["wechat"]["open_base"] == "https://open.weixin.qq.com"
        web = off.test_client()
        for path in ["/sandbox/", "/sandbox/api/cgi-bin/token?grant_type=client_credential",
                     "/sandbox/api/cgi-bin/showqrcode?ticket=x", "/sandbox/open?url=/h5/",
                     "/sandbox/open/connect/oauth2/authorize", "/sandbox/avatar/o1.svg"]:
            assert web.get(path).status_code == 404, path
        for path in ["/sandbox/users", "/sandbox/follow", "/sandbox/api/cgi-bin/qrcode/create"]:
            assert web.post(path).status_code == 404, path
        root = web.get("/")
        assert root.status_code == 302 and root.headers["Location"].endswith("/h5/")
    finally:
        with off.app_context():
            db.engine.dispose()
        off.extensions["fenxiao.redis"].close()
