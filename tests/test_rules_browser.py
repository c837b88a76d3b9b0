"""The 规则设置 page in a real browser: the owner raises the level-1 rate
from tomorrow with a reason, sees it scheduled, then cancels it — at 1280
px and at 375 px. Screenshots go to tests/screenshots/admin/ (rules-*).

Needs Chromium like tests/test_browser_admin.py (skipped without it)."""
from __future__ import annotations

from datetime import timedelta

from admin_helpers import PASSWORD, make_staff  # noqa: F401  (fixture)
from handlers import audit, clock, outbox, rules
from handlers.clock import CHINA, now
from test_browser_admin import FOLDER, LAPTOP
from test_browser_buy import chromium, shoot, waiting


def _log_in(driver, base, wait, ready, By):
    driver.get(f"{base}/admin/login")
    driver.find_element(By.NAME, "name").send_keys("laoban")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ready.title_contains("概览"))


def test_the_owner_schedules_and_cancels_a_rate_in_a_browser(app, settings, make_staff):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    base = settings["app"]["base_url"]
    make_staff("laoban", "owner")
    rules.save({"freeze_days": 10}, reason="售后期延长", actor=audit.Actor("laoban"))
    outbox.commit()
    clock.forget()
    tomorrow = (now() + timedelta(days=1)).astimezone(CHINA).replace(hour=10, minute=0)
    driver = chromium(LAPTOP, 900, phone=False)
    try:
        wait = waiting(driver, 15)
        _log_in(driver, base, wait, ready, By)
        driver.find_element(By.CSS_SELECTOR, ".ad-side nav a[href$='/admin/rules']").click()
        wait.until(ready.title_contains("规则设置"))
        shoot(driver, "rules-01-page", LAPTOP, mobile=False, folder=FOLDER)
        rate = driver.find_element(By.ID, "rl-f-level1_rate_bp")
        rate.clear()
        rate.send_keys("12")
        driver.find_element(By.CSS_SELECTOR, "input[name=when][value=later]").click()
        # A datetime-local field is typed as the browser's locale shows it; set its value instead.
        driver.execute_script("document.querySelector('input[name=effective_at]').value = arguments[0]",
                              tomorrow.strftime("%Y-%m-%dT%H:%M"))
        driver.find_element(By.ID, "rl-reason").send_keys("双十二活动")
        driver.find_element(By.CSS_SELECTOR, ".rl-form button[type=submit]").click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "flash"), "已保存"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert f"将于 {tomorrow:%Y-%m-%d %H:%M} 生效" in body and "待生效" in body
        shoot(driver, "rules-02-scheduled", LAPTOP, mobile=False, folder=FOLDER)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                               {"width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
        driver.refresh()
        wait.until(ready.title_contains("规则设置"))
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways at 375 px ({width} px wide)"
        shoot(driver, "rules-03-phone", 375, mobile=True, folder=FOLDER)
        driver.find_element(By.CSS_SELECTOR, ".rl-next input[name=reason]").send_keys("活动改期")
        driver.find_element(By.CSS_SELECTOR, ".rl-next button[type=submit]").click()
        wait.until(ready.text_to_be_present_in_element((By.ID, "flash"), "已撤销"))
        assert "待生效" not in driver.find_element(By.TAG_NAME, "body").text
        driver.get(f"{base}/admin/rules/history")
        shoot(driver, "rules-04-history-phone", 375, mobile=True, folder=FOLDER)
    finally:
        driver.quit()
