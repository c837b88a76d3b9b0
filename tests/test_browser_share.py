"""Sharing in a real browser (headless Chromium at 375 px) through the
sandbox's phone simulator: a distributor opens their shop as a WeChat user,
the sandbox's JS-SDK stand-in accepts the page's wx.config, the distributor
shares to Moments and to a friend, and other sandbox users open what was
shared and become the distributor's customers. A stale ticket shows
"invalid signature" and the page signs again. Screenshots go to
tests/screenshots/share/."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import select

from distribution_helpers import make_distributor
from handlers import catalogue, outbox
from models import User, db
from sandbox import state
from test_browser_buy import SHOTS, chromium, shoot, waiting

HERE = SHOTS / "share"


@pytest.fixture
def driver():
    browser = chromium()
    try:
        yield browser
    finally:
        browser.quit()


def user(openid: str) -> User:
    db.session.rollback()
    return db.session.scalars(select(User).where(User.openid == openid)).one()


def test_a_distributor_shares_and_friends_who_open_it_become_customers(app, driver, settings, sandbox_user):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base = settings["app"]["base_url"]
    catalogue.seed_tryout_catalogue()
    outbox.commit()
    ahua, xiaoli, laozhang = sandbox_user("阿花"), sandbox_user("小李"), sandbox_user("老张")
    seller = make_distributor("阿花", openid=ahua.openid)
    slug, name = seller.unit.slug, seller.unit.name
    wait = waiting(driver, 15)

    def status() -> str:
        return driver.find_element(By.ID, "wx-sim-status").text

    def be(openid: str) -> None:
        driver.get(f"{base}/sandbox/")
        driver.delete_cookie("sandbox_openid")
        driver.add_cookie({"name": "sandbox_openid", "value": openid, "path": "/"})

    # 阿花 opens her shop from the simulator, as inside WeChat.
    be(ahua.openid)
    driver.get(f"{base}/sandbox/open?url={quote(f'{base}/h5/u/{slug}', safe='')}")
    wait.until(lambda d: "分享卡片已设置" in status())
    assert driver.title == name
    assert driver.execute_script("return window.wxSandboxLog")[0] == "wx.config 验证中…"
    shoot(driver, "1-shop-in-wechat", folder=HERE)

    # 分享到朋友圈: the post is in the Moments feed.
    driver.find_element(By.ID, "wx-share-timeline").click()
    wait.until(lambda d: "/sandbox/moments" in d.current_url)
    assert name in driver.find_element(By.CLASS_NAME, "moment").text
    shoot(driver, "2-moments", folder=HERE)

    # 小李 reads Moments and opens the post: 阿花's customer now.
    Select(driver.find_element(By.NAME, "openid")).select_by_visible_text("小李")
    wait.until(lambda d: "以 小李 的身份浏览" in d.page_source)
    driver.find_element(By.CLASS_NAME, "moment-link").click()
    wait.until(lambda d: "欢迎！你已成为" in d.page_source)
    assert "from=timeline" in driver.current_url and "isappinstalled=0" in driver.current_url
    assert f"欢迎！你已成为 {name} 的顾客" in driver.page_source
    assert user(xiaoli.openid).referrer_id == seller.user_id
    shoot(driver, "3-friend-lands", folder=HERE)

    # 阿花 shares a product page to 老张 in a chat; 老张 opens it from the chat.
    be(ahua.openid)
    product = catalogue.unit_products(seller.unit)[0]
    driver.get(f"{base}/sandbox/open?url={quote(f'{base}/h5/p/{product.id}', safe='')}")
    wait.until(lambda d: "分享卡片已设置" in status())
    driver.find_element(By.ID, "wx-share-friend").click()
    wait.until(lambda d: "分享给朋友" in d.title)
    assert product.name in driver.page_source
    driver.find_element(By.CSS_SELECTOR, 'button[data-nickname="老张"]').click()
    be(laozhang.openid)
    driver.get(f"{base}/sandbox/")
    shoot(driver, "4-chat-card", folder=HERE)
    driver.find_element(By.CLASS_NAME, "share-open").click()
    wait.until(lambda d: "欢迎！你已成为" in d.page_source)
    assert f"/h5/u/{slug}/p/{product.id}" in driver.current_url and "from=singlemessage" in driver.current_url
    assert product.name in driver.page_source and user(laozhang.openid).referrer_id == seller.user_id

    # 阿花's centre counts what her shares brought today.
    be(ahua.openid)
    driver.get(f"{base}/sandbox/open?url={quote(f'{base}/h5/center', safe='')}")
    today = driver.find_element(By.CSS_SELECTOR, "#reach tbody tr").text.split()
    assert today[:4] == ["今日", "2", "2", "人"] and today[4] == "2", today  # 2 visits by 2 people, 2 new customers
    shoot(driver, "6-centre", folder=HERE)


def test_a_refused_signature_shows_invalid_signature_and_the_page_signs_again(app, driver, settings,
                                                                              sandbox_user):
    from selenium.webdriver.common.by import By

    base = settings["app"]["base_url"]
    ahua = sandbox_user("阿花")
    seller = make_distributor("阿花", openid=ahua.openid)
    wait = waiting(driver, 15)
    driver.get(f"{base}/sandbox/")
    driver.add_cookie({"name": "sandbox_openid", "value": ahua.openid, "path": "/"})
    driver.get(f"{base}/sandbox/open?url={quote(f'{base}/h5/u/{seller.unit.slug}', safe='')}")
    wait.until(lambda d: "分享卡片已设置" in d.find_element(By.ID, "wx-sim-status").text)

    # WeChat's ticket dies early; the product still holds it, so the page comes signed with it.
    state.expire_jsapi_ticket(settings["wechat"]["appid"])
    driver.refresh()
    wait.until(lambda d: "分享卡片已设置" in d.find_element(By.ID, "wx-sim-status").text)
    said = driver.execute_script("return window.wxSandboxLog")
    assert "invalid signature" in said and said.count("wx.config 验证中…") == 2, said
    shoot(driver, "5-signed-again", folder=HERE)


def test_outside_the_simulator_there_is_no_share_bar(app, driver, settings):
    from selenium.webdriver.common.by import By

    base = settings["app"]["base_url"]
    seller = make_distributor("阿花")
    driver.get(f"{base}/h5/u/{seller.unit.slug}")
    assert driver.title == seller.unit.name
    assert driver.find_elements(By.ID, "wx-sim") == [] and driver.execute_script("return typeof wx") == "undefined"
