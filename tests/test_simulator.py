"""The phone simulator at /sandbox/: a person without WeChat follows, scans,
clicks the menu, types, unfollows and opens links, each action reaching the
product through the real /wx webhook; the chat page shows what WeChat would."""
from __future__ import annotations

import html
import os
import re
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from app.extensions import db
from models import SandboxMessage, SandboxUser, User
from wxbot.client import wechat_client
from wxbot.menu import load_menu

OPEN_LINK = re.compile(r'href="(/sandbox/open\?url=[^"]+)"')


class Phone:
    """A browser on the simulator."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = requests.Session()

    def page(self) -> str:
        res = self.http.get(f"{self.base}/sandbox/")
        assert res.status_code == 200
        return res.text

    def do(self, action: str, **form) -> requests.Response:
        """POST one simulator action; it must answer with a redirect, never an error."""
        res = self.http.post(f"{self.base}/sandbox/{action}", data=form, allow_redirects=False)
        assert res.status_code == 302, (action, res.status_code, res.text[:300])
        return res

    def new_user(self, nickname: str) -> str:
        res = self.do("users", nickname=nickname)
        assert urlsplit(res.headers["Location"]).path == "/sandbox/"
        return self.http.cookies["sandbox_openid"]

    def chat(self) -> str:
        """The chat part of the page, without the forms below it."""
        text = self.page()
        return text[text.index('<div class="chat">'):text.index('<div class="bar">')]

    def links(self) -> list[str]:
        return [html.unescape(u) for u in OPEN_LINK.findall(self.chat())]


@pytest.fixture
def phones(app, base):
    made = []

    def make() -> Phone:
        p = Phone(base)
        made.append(p)
        return p

    yield make
    for p in made:
        p.http.close()


@pytest.fixture
def phone(phones) -> Phone:
    return phones()


def new_part(before: str, after: str) -> str:
    """What appeared in the chat since ``before``."""
    return after[len(os.path.commonprefix([before, after])):]


def page_of(res: requests.Response) -> str:
    """The page a browser shows, without the fragment it carried along
    (a browser keeps #wechat_redirect through redirects without one)."""
    return res.url.split("#", 1)[0]


def product_user(openid: str) -> User | None:
    db.session.rollback()  # see what the server committed
    return db.session.scalars(select(User).where(User.openid == openid)).one_or_none()


def platform_user(openid: str) -> SandboxUser:
    db.session.rollback()
    return db.session.scalars(select(SandboxUser).where(SandboxUser.openid == openid)).one()


def bubbles(openid: str) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(SandboxMessage).where(
        SandboxMessage.openid == openid))


def test_first_visit_asks_who_you_are(phone):
    page = phone.page()
    assert "你是谁？" in page and 'action="/sandbox/users"' in page


def test_follow_talk_and_unfollow(phone, base):
    made = phone.do("users", nickname="小王")
    assert "HttpOnly" in made.headers["Set-Cookie"] and "SameSite=Lax" in made.headers["Set-Cookie"]
    openid = phone.http.cookies["sandbox_openid"]
    page = phone.page()
    assert "小王 · 未关注" in page and "关注公众号" in page
    assert product_user(openid) is None  # WeChat has told the product nothing yet

    phone.do("follow")

    chat = phone.chat()
    assert "关注了公众号" in chat and "欢迎关注" in chat
    assert "小王 · 已关注" in phone.page()
    assert product_user(openid).is_subscribed  # it went through /wx
    assert all(urlsplit(urljoin(base, link)).path == "/sandbox/open" for link in phone.links())
    assert any(parse_qs(urlsplit(link).query)["url"] == [f"{base}/h5/shop"] for link in phone.links())

    phone.do("text", content="帮助")
    chat = phone.chat()
    assert '<div class="bubble">帮助</div>' in chat
    assert "「帮助」再看一次本说明" in chat

    phone.do("text", content="<b>你好</b>")
    chat = phone.chat()
    assert "&lt;b&gt;你好&lt;/b&gt;" in chat and "<b>你好</b>" not in chat  # shown as text
    assert "没听懂这句话" in chat

    phone.do("unfollow")
    assert "取消关注" in phone.chat()
    assert "小王 · 未关注" in phone.page()
    assert product_user(openid).subscription == "unsubscribed"
    assert wechat_client().user.get(openid)["subscribe"] == 0


def test_scan_a_code_by_ticket_then_by_typed_scene(phone, base):
    wx = wechat_client()
    code = wx.qrcode.create({"action_name": "QR_LIMIT_STR_SCENE",
                             "action_info": {"scene": {"scene_str": "dist_7"}}})
    openid = phone.new_user("小李")
    page = phone.page()
    assert f'value="{code["ticket"]}"' in page
    assert f'/sandbox/api/cgi-bin/showqrcode?ticket={code["ticket"]}' in page

    phone.do("scan", ticket=code["ticket"])

    chat = phone.chat()
    assert "扫码关注（场景 dist_7）" in chat and "欢迎关注" in chat
    info = wx.user.get(openid)
    assert info["subscribe"] == 1
    assert info["subscribe_scene"] == "ADD_SCENE_QR_CODE" and info["qr_scene_str"] == "dist_7"
    assert product_user(openid).first_contact == "scan"

    phone.do("scan", scene="poster-2")  # already a follower: a SCAN event
    chat = phone.chat()
    assert "扫描了二维码（场景 poster-2）" in chat and "欢迎回来" in chat
    assert wx.user.get(openid)["qr_scene_str"] == "dist_7"  # the scene of the follow stays

    temporary = wx.qrcode.create({"action_name": "QR_STR_SCENE", "expire_seconds": 600,
                                  "action_info": {"scene": {"scene_str": "share_9"}}})
    phone.do("scan", ticket=temporary["ticket"])
    assert "扫描了二维码（场景 share_9）" in phone.chat()


EXPECTED_REPLIES = {
    "SHOP": "进入商城",
    "MY_QRCODE": "专属二维码海报",
    "MY_INCOME": "收入与提现仅对分销商开放",
    "CENTER": "分销中心是分销商的主页",
    "APPLY": "填写申请",
    "LEADERBOARD": "查看排行榜",
    "HELP": "「帮助」再看一次本说明",
}


def menu_buttons(page: str) -> list[tuple[str, str]]:
    return re.findall(r'name="key" value="([^"]*)"><input type="hidden" name="name" value="([^"]*)"', page)


def test_every_menu_button_answers(phone):
    phone.new_user("小张")
    phone.do("follow")
    page = phone.page()
    assert "菜单尚未发布" in page  # shown from the repository until published
    assert wechat_client().menu.create(load_menu())["errcode"] == 0
    page = phone.page()
    assert "菜单尚未发布" not in page
    buttons = menu_buttons(page)
    assert {key for key, _ in buttons} == set(EXPECTED_REPLIES)

    # Quick taps, several within one second of WeChat's CreateTime: each
    # still gets its own answer, not the one cached for the tap before.
    for key, name in buttons:
        before = phone.chat()
        phone.do("click", key=key, name=name)
        added = new_part(before, phone.chat())
        assert f"点击菜单「{name}」" in added, key
        assert EXPECTED_REPLIES[key] in added, key
        if key != "HELP":
            assert "「帮助」再看一次本说明" not in added, f"{key} fell back to help"


def test_clicking_before_following_does_not_reach_the_account(phone):
    openid = phone.new_user("小张")
    phone.do("click", key="SHOP", name="商城")
    assert "关注公众号后才能使用菜单" in phone.page()
    phone.do("text", content="帮助")
    assert "关注公众号后才能发消息" in phone.page()
    assert bubbles(openid) == 0
    assert product_user(openid) is None


def test_link_in_a_reply_opens_the_page_as_the_simulated_user(phones, base):
    phone = phones()
    openid = phone.new_user("小王")
    phone.do("follow")
    link = next(u for u in phone.links() if parse_qs(urlsplit(u).query)["url"] == [f"{base}/h5/shop"])

    res = phone.http.get(urljoin(base, link))

    assert res.status_code == 200 and page_of(res) == f"{base}/h5/shop"
    assert "以哪位微信用户" not in res.text  # snsapi_base is silent from the simulator
    assert any("/h5/auth/callback" in r.url for r in res.history)  # through the real OAuth callback
    me = phone.http.get(f"{base}/h5/")
    assert f"微信用户{openid[-4:]}" in me.text and "已关注公众号" in me.text

    # Switch to another person on the same phone: the page follows.
    other = phone.new_user("小李")
    phone.http.get(urljoin(base, link))
    me = phone.http.get(f"{base}/h5/")
    assert f"微信用户{other[-4:]}" in me.text and "未关注公众号" in me.text

    # A browser that is not the simulator still has to choose on the authorize page.
    stranger = phones()
    res = stranger.http.get(urljoin(base, link), headers={"User-Agent": "Mozilla/5.0 MicroMessenger/8.0.50"})
    assert res.status_code == 200 and "以哪位微信用户" in res.text


def test_view_menu_button_opens_the_page_as_the_user(phone, base):
    menu = {"button": [{"type": "view", "name": "商城", "url": f"{base}/h5/shop"}]}
    assert wechat_client().menu.create(menu)["errcode"] == 0
    openid = phone.new_user("小王")
    phone.do("follow")
    assert f'name="url" value="{base}/h5/shop"' in phone.page()

    res = phone.http.post(f"{base}/sandbox/view", data={"url": f"{base}/h5/shop"})

    assert res.status_code == 200 and page_of(res) == f"{base}/h5/shop"
    assert "以哪位微信用户" not in res.text
    assert f"打开菜单链接 {base}/h5/shop" in phone.chat()
    assert f"微信用户{openid[-4:]}" in phone.http.get(f"{base}/h5/").text


def test_template_message_link_opens_as_its_receiver(phone, base):
    openid = phone.new_user("小红")
    phone.do("follow")
    wechat_client().message.send_template(openid, "OrderShipped", {"thing1": {"value": "保温杯"}},
                                          url=f"{base}/h5/notifications")
    link = next(u for u in phone.links() if "notifications" in u)
    res = phone.http.get(urljoin(base, link))
    assert res.status_code == 200 and page_of(res) == f"{base}/h5/notifications"
    assert f"微信用户{openid[-4:]}" in phone.http.get(f"{base}/h5/").text


@pytest.mark.parametrize("action, form", [
    ("follow", {}), ("unfollow", {}), ("scan", {"scene": "dist_1"}), ("click", {"key": "HELP"}),
    ("text", {"content": "帮助"}), ("view", {"url": "http://127.0.0.1/h5/"}),
])
def test_actions_without_a_chosen_user_go_back_to_the_picker(phone, action, form):
    res = phone.do(action, **form)
    assert urlsplit(res.headers["Location"]).path == "/sandbox/"
    assert "你是谁？" in phone.page()


def test_a_stale_user_cookie_goes_back_to_the_picker(phone, base):
    phone.http.cookies.set("sandbox_openid", "o" + "z" * 27, domain=urlsplit(base).hostname)
    assert "你是谁？" in phone.page()
    phone.do("follow")
    phone.do("switch", openid="onobody")
    assert "sandbox_openid" not in phone.http.cookies
    assert "你是谁？" in phone.page()


@pytest.mark.parametrize("form, warning", [
    ({"scene": "x" * 65}, "场景值需 1-64 个字符"),
    ({"scene": "   "}, "场景值需 1-64 个字符"),
    ({}, "场景值需 1-64 个字符"),
    ({"ticket": "gQnosuchticket"}, "二维码已过期或无效"),
])
def test_bad_scans_are_explained_and_reach_nobody(phone, form, warning):
    openid = phone.new_user("小王")
    phone.do("scan", **form)
    assert warning in phone.page()
    assert bubbles(openid) == 0
    assert product_user(openid) is None
    assert not platform_user(openid).subscribed


def test_empty_text_sends_nothing(phone):
    openid = phone.new_user("小王")
    phone.do("follow")
    before = bubbles(openid)
    for content in ("", "   ", "\n"):
        phone.do("text", content=content)
    assert bubbles(openid) == before


def test_unfollow_and_follow_twice_are_explained(phone):
    openid = phone.new_user("小王")
    phone.do("unfollow")
    assert "还没有关注" in phone.page()
    phone.do("follow")
    phone.do("follow")
    assert "已经关注了" in phone.page()
    assert phone.chat().count("关注了公众号") == 1
    assert platform_user(openid).subscribed


@pytest.mark.parametrize("url", [
    "https://evil.example/h5/", "//evil.example/h5/", "javascript:alert(1)", "",
])
def test_open_refuses_pages_off_the_site(phone, base, url):
    phone.new_user("小王")
    res = phone.http.get(f"{base}/sandbox/open", params={"url": url}, allow_redirects=False)
    assert res.status_code == 400


def test_open_refuses_a_script_url_naming_the_site(phone, base):
    url = f"javascript://{urlsplit(base).netloc}/%0aalert(document.cookie)"
    res = phone.http.get(f"{base}/sandbox/open", params={"url": url}, allow_redirects=False)
    assert res.status_code == 400
