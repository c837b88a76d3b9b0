"""The statistics page in a real browser: headless Chromium at 1280 px opens
统计 from the menu, ECharts (vendored) draws every chart from the figures
the page carries, a quick range and a chosen range reload it, a reversed
range is refused in Chinese; then the same page at 375 px on a phone, with
nothing scrolling sideways. Screenshots go to tests/screenshots/admin/.

Needs Chromium like tests/test_browser_admin.py.
"""
from __future__ import annotations

from datetime import timedelta

from admin_helpers import PASSWORD, make_staff  # noqa: F401  (fixture)
from test_admin_stats import page_data, world  # noqa: F401  (fixture)
from test_browser_admin import FOLDER, LAPTOP
from test_browser_buy import chromium, shoot, waiting

CHARTS = 5


def _log_in(driver, base, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    driver.get(f"{base}/admin/login")
    driver.find_element(By.NAME, "name").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    waiting(driver, 15).until(ready.title_contains("概览"))


def _charts_drawn(driver) -> bool:
    """Every chart has its canvas, and ECharts says it drew them all."""
    return driver.execute_script(
        "return document.documentElement.getAttribute('data-charts') === arguments[0]"
        " && [...document.querySelectorAll('[data-chart]')].every(el => el.querySelector('canvas'))",
        str(CHARTS))


def test_the_statistics_page_in_a_browser(app, settings, make_staff, world):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    base = settings["app"]["base_url"]
    make_staff("yunying", "operator")
    driver = chromium(LAPTOP, 900, phone=False)
    try:
        wait = waiting(driver, 20)
        _log_in(driver, base, "yunying")
        driver.find_element(By.LINK_TEXT, "统计").click()
        wait.until(ready.title_contains("统计"))
        wait.until(lambda d: _charts_drawn(d))
        assert "echarts" in driver.execute_script("return typeof echarts === 'object' ? 'echarts' : ''")
        data = page_data(driver.page_source)
        assert len(data["days"]) == 30 and data["days"][-1] == world["today"].isoformat()
        shoot(driver, "20-stats", LAPTOP, mobile=False, folder=FOLDER)

        # The generated ten days, chosen in the form.
        driver.execute_script(
            "document.querySelector('input[name=from]').value = arguments[0];"
            "document.querySelector('input[name=to]').value = arguments[1];",
            world["first"].isoformat(), world["today"].isoformat())
        driver.find_element(By.CSS_SELECTOR, ".st-range button[type=submit]").click()
        wait.until(ready.url_contains(f"from={world['first'].isoformat()}"))
        wait.until(lambda d: _charts_drawn(d))
        assert len(page_data(driver.page_source)["days"]) == 10
        funnel = driver.find_element(By.ID, "st-funnel").text
        assert "打开次数" in funnel and "全部单元" in funnel
        driver.find_element(By.CSS_SELECTOR, ".st-days summary").click()
        shoot(driver, "21-stats-ten-days", LAPTOP, mobile=False, folder=FOLDER)

        driver.find_element(By.LINK_TEXT, "近 7 天").click()
        wait.until(lambda d: len(page_data(d.page_source)["days"]) == 7)

        # A reversed range: refused in Chinese, the form kept.
        driver.execute_script(
            "document.querySelector('input[name=from]').value = arguments[0];"
            "document.querySelector('input[name=to]').value = arguments[1];",
            world["today"].isoformat(), (world["today"] - timedelta(days=3)).isoformat())
        driver.find_element(By.CSS_SELECTOR, ".st-range button[type=submit]").click()
        error = wait.until(ready.presence_of_element_located((By.ID, "st-error")))
        assert error.text == "开始日期不能晚于结束日期"
        assert not driver.find_elements(By.ID, "stats-data")
        shoot(driver, "22-stats-reversed-range", LAPTOP, mobile=False, folder=FOLDER)
    finally:
        driver.quit()

    phone = chromium(375, 812, phone=True)
    try:
        _log_in(phone, base, "yunying")
        phone.get(f"{base}/admin/stats?from={world['first'].isoformat()}&to={world['today'].isoformat()}")
        waiting(phone, 20).until(lambda d: _charts_drawn(d))
        assert phone.execute_script("return document.documentElement.scrollWidth") <= 375
        widths = phone.execute_script(
            "return [...document.querySelectorAll('[data-chart] canvas')].map(c => c.getBoundingClientRect().right)")
        assert widths and max(widths) <= 375
        shoot(phone, "23-phone-stats", folder=FOLDER)
    finally:
        phone.quit()
