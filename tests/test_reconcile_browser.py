"""The 对账 pages in a real browser at 1280 px and 375 px: a day with
differences, one resolved from the page with a note. Screenshots go to
tests/screenshots/reconcile/. Needs Chromium like tests/test_browser_buy.py."""
from __future__ import annotations

from sqlalchemy import select

from admin_helpers import PASSWORD, make_staff  # noqa: F401  (fixture)
from models import ReconcileDifference, db
from sandbox import wechatpay as sandbox_wx
from test_browser_buy import SHOTS, chromium, shoot, waiting
from test_reconcile import Shop, one_china_day, reconcile_day, run_today  # noqa: F401  (autouse: one day)

FOLDER = SHOTS / "reconcile"


def _day_with_differences(app, base, jobs, settings) -> str:
    shop = Shop(base, jobs)
    m = settings["wechatpay"]["mchid"]
    gone = shop.wx_paid(1990)
    sandbox_wx.redis_store.conn.delete(sandbox_wx._trade_key(m, gone))
    changed = shop.wx_paid(2500)
    trade = sandbox_wx.load_trade(m, changed)
    trade["total"] = 2400
    sandbox_wx.save_trade(trade)
    shop.ali_paid(1200)
    run_today()
    return reconcile_day().isoformat()


def _log_in(driver, base: str, name: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    driver.get(f"{base}/admin/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    waiting(driver, 15).until(ready.title_contains("概览"))


def test_the_reconcile_pages_on_a_laptop_and_a_phone(app, settings, make_staff, jobs):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    base = settings["app"]["base_url"]
    day = _day_with_differences(app, base, jobs, settings)
    make_staff("caiwu", "finance")
    for width, phone in ((1280, False), (375, True)):
        driver = chromium(width, 900 if not phone else 812, phone=phone)
        try:
            _log_in(driver, base, "caiwu")
            driver.get(f"{base}/admin/reconcile")
            assert "2 条差异" in driver.find_element(By.ID, f"rc-day-{day}").text
            assert driver.execute_script("return document.documentElement.scrollWidth") <= width
            shoot(driver, f"{width}-days", width=width, mobile=phone, folder=FOLDER)
            driver.get(f"{base}/admin/reconcile/{day}")
            assert driver.execute_script("return document.documentElement.scrollWidth") <= width
            shoot(driver, f"{width}-day", width=width, mobile=phone, folder=FOLDER)
            if not phone:
                db.session.rollback()
                d = db.session.scalars(select(ReconcileDifference).where(ReconcileDifference.problem == "amount")).one()
                row = driver.find_element(By.ID, f"rc-diff-{d.id}")
                row.find_element(By.NAME, "note").send_keys("微信支付已确认金额 24.00 元，差额已补")
                row.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                waiting(driver, 15).until(ready.text_to_be_present_in_element((By.ID, f"rc-diff-{d.id}"),
                                                                                   "已处理"))
                assert "已处理" in driver.find_element(By.ID, "flash").text
                shoot(driver, f"{width}-resolved", width=width, mobile=phone, folder=FOLDER)
        finally:
            driver.quit()
