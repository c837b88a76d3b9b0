"""A real browser buys one product: headless Chromium at 375 px, as a guest
outside WeChat, from a distributor's unit link through the sandbox Alipay
cashier and back. Screenshots of every step go to tests/screenshots/buy/.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium
and chromium-driver) and selenium. Without them the test is skipped, except
when FENXIAO_TEST_BROWSER=required (CI), where it fails.
"""
from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from distribution_helpers import make_distributor
from handlers import catalogue, outbox
from models import Order, db

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent / "screenshots"
BUY = SHOTS / "buy"  # this test's own: other browser tests write beside it at the same time (pytest-xdist)
PHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.0 Mobile/15E148 Safari/604.1")
ROOT = Path(__file__).resolve().parent.parent


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements-test.txt)"
    if not (ROOT / "pay" / "alipay.py").exists():
        return "pay/alipay.py (the Alipay gateway) is not written yet"
    return None


def chromium(width: int = 375, height: int = 812, phone: bool = True):
    """Headless Chromium at ``width`` px: a phone (mobile emulation, WeChat-sized) or a laptop window."""
    missing = _missing()
    if missing:
        if os.environ.get("FENXIAO_TEST_BROWSER") == "required":
            pytest.fail(f"browser test required but {missing}")
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage", "--lang=zh-CN",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    if phone:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2}, "userAgent": PHONE_UA})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_page_load_timeout(30)
    return browser


def waiting(driver, seconds: float = 15):
    """``WebDriverWait`` whose conditions are read again when the page changed
    under them (a form's navigation, an htmx swap): Chromium then calls the
    element stale, or says its node no longer belongs to the document.
    Anything else still fails the wait at once, and a condition never met
    still times out."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    class Wait(WebDriverWait):
        def until(self, method, message: str = ""):
            def settled(d):
                try:
                    return method(d)
                except StaleElementReferenceException:
                    return False
                except WebDriverException as exc:
                    if "does not belong to the document" in str(exc):
                        return False
                    raise

            return super().until(settled, message)

    return Wait(driver, seconds)


@pytest.fixture
def driver():
    browser = chromium()
    try:
        yield browser
    finally:
        browser.quit()


def shoot(driver, name: str, width: int = 375, mobile: bool = True, folder: Path = SHOTS) -> Path:
    """The whole page at ``width`` px, as a screen as tall as the page would
    show it (so fixed bars sit at the bottom, not in the middle)."""
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.max(document.documentElement.scrollHeight, window.innerHeight)")
    metrics = {"width": width, "deviceScaleFactor": 2 if mobile else 1, "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": min(int(height), 4000)})
    try:
        data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"]
    finally:
        if mobile:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {**metrics, "height": 812})
        else:
            driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path = folder / f"{name}.png"
    path.write_bytes(base64.b64decode(data))
    return path


def test_a_guest_buys_one_product_in_a_phone_browser(app, driver, settings):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    base = settings["app"]["base_url"]
    catalogue.seed_tryout_catalogue()
    outbox.commit()
    d = make_distributor("小美")
    if BUY.exists():
        shutil.rmtree(BUY)
    wait = waiting(driver, 15)

    driver.get(f"{base}/h5/u/{d.unit.slug}")
    assert driver.title == d.unit.name
    assert driver.execute_script("return window.innerWidth") == 375
    assert "小美 为你推荐" in driver.find_element(By.CLASS_NAME, "fx-profile").text
    shoot(driver, "01-unit-shop", folder=BUY)
    # No sideways scrolling at 375 px.
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 375

    driver.find_element(By.XPATH, "//a[contains(@class,'fx-card')][.//*[contains(text(),'云南小粒咖啡豆')]]").click()
    wait.until(ready.presence_of_element_located((By.ID, "add-to-cart")))
    assert "¥89.00" in driver.page_source
    qty = driver.find_element(By.ID, "qty")
    qty.clear()
    qty.send_keys("2")
    shoot(driver, "02-product", folder=BUY)
    driver.find_element(By.ID, "add-to-cart").click()

    wait.until(ready.presence_of_element_located((By.ID, "cart-total")))
    assert driver.find_element(By.ID, "cart-total").text == "¥178.00"
    shoot(driver, "03-cart", folder=BUY)
    driver.find_element(By.ID, "checkout").click()

    wait.until(ready.presence_of_element_located((By.ID, "place-order")))
    # A mistake first: the page says what is wrong and keeps what was typed.
    driver.find_element(By.ID, "name").send_keys("韩梅梅")
    driver.find_element(By.ID, "mobile").send_keys("1380013")
    driver.find_element(By.ID, "address").send_keys("北京市海淀区中关村大街 1 号 3 号楼 502")
    driver.find_element(By.ID, "place-order").click()
    wait.until(ready.presence_of_element_located((By.CLASS_NAME, "fx-error")))
    assert "手机号" in driver.find_element(By.CLASS_NAME, "fx-error").text
    assert driver.find_element(By.ID, "name").get_attribute("value") == "韩梅梅"
    shoot(driver, "04-checkout-error", folder=BUY)
    mobile = driver.find_element(By.ID, "mobile")
    mobile.clear()
    mobile.send_keys("13800138000")
    driver.find_element(By.ID, "note").send_keys("工作日送货")
    shoot(driver, "05-checkout", folder=BUY)
    driver.find_element(By.ID, "place-order").click()

    # Outside WeChat: the sandbox Alipay cashier.
    wait.until(ready.url_contains("/sandbox/pay/alipay/"))
    assert "178.00" in driver.page_source
    shoot(driver, "06-alipay-cashier", folder=BUY)
    driver.find_element(By.XPATH, "//form[contains(@action,'/pay')]//button").click()

    wait.until(ready.url_contains("/h5/orders/"))
    if driver.find_elements(By.ID, "back"):  # the cashier's result page, when the notification was not taken
        driver.find_element(By.ID, "back").click()
    wait.until(ready.presence_of_element_located((By.ID, "order-status")))
    assert driver.find_element(By.ID, "order-status").text == "待发货"
    assert driver.find_element(By.ID, "order-total").text == "¥178.00"
    shoot(driver, "07-order-paid", folder=BUY)

    driver.get(f"{base}/h5/orders")
    assert "待发货" in driver.page_source
    shoot(driver, "08-my-orders", folder=BUY)

    db.session.rollback()
    order = db.session.scalars(select(Order)).one()
    assert (order.status, order.pay_channel, order.total_fen) == ("paid", "alipay", 17800)
    assert (order.unit_id, order.distributor_id, order.guest_mobile) == (d.unit.id, d.id, "13800138000")
    assert sorted(p.name for p in BUY.glob("*.png")) == [
        "01-unit-shop.png", "02-product.png", "03-cart.png", "04-checkout-error.png", "05-checkout.png",
        "06-alipay-cashier.png", "07-order-paid.png", "08-my-orders.png"]
