"""What the bot says: every menu button and every keyword answers in useful
Chinese, and every page it links to opens for the person who tapped it."""
from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

MENU = json.loads((Path(__file__).resolve().parent.parent / "wxbot" / "menu.json").read_text("utf-8"))
HAN = re.compile(r"[\u4e00-\u9fff]")
HREF = re.compile(r'<a href="([^"]+)">([^<]+)</a>')


def click_keys(buttons: list[dict]) -> list[str]:
    keys = []
    for button in buttons:
        if button.get("type") == "click":
            keys.append(button["key"])
        keys += click_keys(button.get("sub_button", []))
    return keys


CLICK_KEYS = click_keys(MENU["button"])
# The keywords the issue promises, and the button each one stands for.
KEYWORDS = {"商城": "SHOP", "我的二维码": "MY_QRCODE", "申请分销": "APPLY", "我的收入": "MY_INCOME",
            "排行榜": "LEADERBOARD", "分销中心": "CENTER", "帮助": "HELP"}
PAGES_EXPECTED = {"SHOP", "MY_QRCODE", "APPLY", "MY_INCOME", "LEADERBOARD", "CENTER"}


def links(content: str) -> list[str]:
    return [url for url, _text in HREF.findall(content)]


def say(wechat, openid: str, text: str) -> str:
    d = wechat.push(wechat.text(openid, text))
    assert d.status == 200, d.body
    assert d.reply["MsgType"] == "text"
    return d.reply["Content"]


def tap(wechat, openid: str, key: str) -> str:
    d = wechat.push(wechat.click(openid, key))
    assert d.status == 200, d.body
    assert d.reply["MsgType"] == "text"
    return d.reply["Content"]


def login(settings, openid: str) -> requests.Session:
    """Sign in on H5 the way a person does: our login page sends the browser
    to the (sandbox) WeChat authorize page, the person is chosen, WeChat
    redirects back with a code, and the callback exchanges it."""
    base = settings["app"]["base_url"]
    browser = requests.Session()
    # userinfo: the apply page needs the person's name and avatar (their shop and poster carry them).
    page = browser.get(f"{base}/h5/auth/login", params={"next": "/h5/", "scope": "snsapi_userinfo"}, timeout=5)
    assert page.status_code == 200 and urlsplit(page.url).path.endswith("/connect/oauth2/authorize")
    args = {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}
    form = {k: args.get(k, "") for k in ("appid", "redirect_uri", "response_type", "scope", "state")}
    res = browser.post(page.url.split("?")[0], data={**form, "openid": openid}, timeout=5)
    assert res.status_code == 200, res.text[:300]
    assert urlsplit(res.url).path == "/h5/", res.url
    return browser


@pytest.fixture
def person(app, sandbox_user):
    return sandbox_user("小陈")


@pytest.fixture
def help_text(wechat, person) -> str:
    return tap(wechat, person.openid, "HELP")


def test_the_menu_has_the_buttons_the_issue_asks_for():
    assert set(CLICK_KEYS) == set(KEYWORDS.values())
    assert len(CLICK_KEYS) == len(set(CLICK_KEYS))


@pytest.mark.parametrize("key", CLICK_KEYS)
def test_every_menu_button_answers_in_useful_chinese(wechat, settings, person, help_text, key):
    content = tap(wechat, person.openid, key)
    assert len(HAN.findall(content)) >= 8, content
    assert "success" not in content
    if key != "HELP":
        assert content != help_text, f"{key} fell back to the help text: it has no command"
    base = settings["app"]["base_url"]
    urls = links(content)
    if key in PAGES_EXPECTED:
        assert urls, f"{key} should lead somewhere"
    for url in urls:
        assert url.startswith(f"{base}/h5/"), url


@pytest.mark.parametrize("word", KEYWORDS)
def test_every_keyword_answers_like_its_button(wechat, person, word):
    by_word = say(wechat, person.openid, word)
    assert by_word == tap(wechat, person.openid, KEYWORDS[word])


@pytest.mark.parametrize("variant", [" 帮助 ", "HELP", "help", "?", "？", "菜单"])
def test_help_is_found_however_it_is_typed(wechat, person, help_text, variant):
    assert say(wechat, person.openid, variant) == help_text


def test_help_lists_every_keyword(help_text):
    for word in KEYWORDS:
        assert f"「{word}」" in help_text


def test_unknown_text_gets_a_helpful_reply(wechat, person, help_text):
    content = say(wechat, person.openid, "今天天气怎么样")
    assert "帮助" in content  # tells the person how to find out what works
    assert content != help_text
    assert HAN.search(content)


def test_unknown_menu_key_gets_the_help_text(wechat, person, help_text):
    assert tap(wechat, person.openid, "RETIRED_BUTTON_2023") == help_text
    assert tap(wechat, person.openid, "") == help_text


def test_two_menu_taps_in_the_same_second_both_answered(wechat, person):
    shop = wechat.click(person.openid, "SHOP")
    board = {**wechat.click(person.openid, "LEADERBOARD"), "CreateTime": shop["CreateTime"]}
    first, second = wechat.push(shop), wechat.push(board)
    assert "商城" in first.reply["Content"]
    assert "排行榜" in second.reply["Content"]


def _all_bot_links(wechat, person) -> set[str]:
    urls: set[str] = set()
    for key in CLICK_KEYS:
        urls.update(links(tap(wechat, person.openid, key)))
    urls.update(links(wechat.push(wechat.subscribe(person.openid)).reply["Content"]))
    urls.update(links(wechat.push(wechat.scan(person.openid, "dist42")).reply["Content"]))
    return urls


def test_every_linked_page_opens_for_a_signed_in_person(wechat, settings, person):
    urls = _all_bot_links(wechat, person)
    assert len(urls) >= 3, urls  # a customer: shop, apply, leaderboard (distributors: test_bot_distribution)
    browser = login(settings, person.openid)
    for url in sorted(urls):
        # A page may send the person on (e.g. to the application form first),
        # but never out of the shop, back to sign-in, or to an error.
        res = browser.get(url, timeout=5)
        assert res.status_code == 200, (url, res.status_code, res.text[:300])
        assert urlsplit(res.url).path.startswith("/h5/"), (url, res.url)
        assert "/auth/" not in res.url and not any(r.status_code >= 400 for r in res.history), url
        assert HAN.search(res.text), url
        assert "服务器开小差" not in res.text and "页面不存在" not in res.text, url


def test_linked_pages_ask_a_stranger_to_sign_in(wechat, settings, person):
    base = settings["app"]["base_url"]
    for url in sorted(_all_bot_links(wechat, person)):
        # Bot links open inside WeChat's browser.
        res = requests.get(url, timeout=5, allow_redirects=False,
                           headers={"User-Agent": "Mozilla/5.0 MicroMessenger/8.0.50"})
        assert res.status_code in (302, 303), (url, res.status_code)
        target = res.headers["Location"]
        assert urlsplit(target).path == "/h5/auth/login", target
        assert parse_qs(urlsplit(target).query)["next"] == [url[len(base):]]


def test_commands_work_before_the_person_is_known(app, wechat):
    """A tap can be the first we hear of someone (they followed before the product)."""
    openid = "o" + secrets.token_urlsafe(20)[:27]
    assert "商城" in tap(wechat, openid, "SHOP")
