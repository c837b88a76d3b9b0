"""A merchant's day in a real browser: headless Chromium on a laptop-sized
window logs in to /admin, approves an application, adds a product with a
picture, ships an order and pays a withdrawal; then the same back office at
375 px on a phone. Screenshots of every step go to tests/screenshots/admin/.

Needs Chromium like tests/test_browser_buy.py (skipped without it, except
when FENXIAO_TEST_BROWSER=required, as in CI).
"""
from __future__ import annotations

import io
import re

from PIL import Image
from sqlalchemy import func, select

from admin_helpers import PASSWORD, make_staff  # noqa: F401  (fixture)
from distribution_helpers import make_user
from handlers import applications, catalogue, outbox, withdrawals
from models import Application, AuditEntry, Order, Product, Withdrawal, db
from test_browser_buy import SHOTS, chromium, shoot, waiting
from test_every_page import _buy, _logged_in, _pay
from test_income_pages import complete, settle_everything

FOLDER = SHOTS / "admin"
LAPTOP = 1280


def _world(app, base, sandbox_user, settings):
    """A distributor with a settled commission (so a withdrawal waits), a
    customer's paid order to ship, and an application waiting for review."""
    item = catalogue.add_product("山茶花洗护礼盒", 16800, 50, "好物。", ["/h5/static/products/camellia.png"])
    outbox.commit()
    seller_browser, seller = _logged_in(sandbox_user, base, "小美", distributor=True)
    customer, _ = _logged_in(sandbox_user, base, "顾客甲")
    assert customer.get(f"{base}/h5/u/{seller.unit.slug}").status_code == 200
    first = _buy(customer, base, item.id, 2)
    _pay(first)
    complete(db.session.scalars(select(Order).where(Order.order_no == first)).one())
    settle_everything(settings)
    to_ship = _buy(customer, base, item.id, 1)
    _pay(to_ship)
    withdrawal = withdrawals.request_withdrawal(seller, 2000, withdrawals.new_request_key())
    applicant = make_user("申请人")
    application = applications.apply_for_distributor(applicant, "王小明", "13912345678", "想把好东西分享给朋友")
    outbox.commit()
    for b in (seller_browser, customer):
        b.close()
    return {"order_no": to_ship, "withdrawal_id": withdrawal.id, "application_id": application.id}


def _picture(tmp_path):
    path = tmp_path / "礼盒.png"
    image = Image.new("RGB", (1600, 1200), (212, 96, 72))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def test_a_merchants_day_in_the_back_office(app, settings, sandbox_user, make_staff, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.select import Select

    base = settings["app"]["base_url"]
    world = _world(app, base, sandbox_user, settings)
    make_staff("laoban", "owner")
    driver = chromium(LAPTOP, 900, phone=False)
    try:
        wait = waiting(driver, 15)
        # Log in.
        driver.get(f"{base}/admin/")
        wait.until(ready.url_contains("/admin/login"))
        driver.find_element(By.NAME, "name").send_keys("laoban")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        shoot(driver, "01-login", LAPTOP, mobile=False, folder=FOLDER)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ready.title_contains("概览"))
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "laoban" in body and "待审核" in body
        shoot(driver, "02-dashboard", LAPTOP, mobile=False, folder=FOLDER)

        # Approve the application from the queue (htmx replaces the row).
        driver.find_element(By.CSS_SELECTOR, ".ad-side nav a[href$='/admin/applications']").click()
        row = f"application-{world['application_id']}"
        wait.until(ready.presence_of_element_located((By.ID, row)))
        assert "王小明" in driver.find_element(By.ID, row).text
        driver.find_element(By.CSS_SELECTOR, f"#{row} button[type=submit].ad-btn--primary").click()
        wait.until(ready.text_to_be_present_in_element((By.ID, row), "已通过"))
        shoot(driver, "03-application-approved", LAPTOP, mobile=False, folder=FOLDER)

        # Add a product with a picture.
        driver.get(f"{base}/admin/products/new")
        driver.find_element(By.NAME, "name").send_keys("手作红枣")
        driver.find_element(By.NAME, "price").send_keys("59.90")
        stock = driver.find_element(By.NAME, "stock")
        stock.clear()
        stock.send_keys("80")
        box = driver.find_element(By.NAME, "on_sale")
        if not box.is_selected():
            box.click()
        driver.find_element(By.NAME, "pictures").send_keys(str(_picture(tmp_path)))
        shoot(driver, "04-product-form", LAPTOP, mobile=False, folder=FOLDER)
        driver.find_element(By.CSS_SELECTOR, "form.pd-form button[type=submit]").click()
        wait.until(lambda d: "手作红枣" in d.page_source and "/products/new" not in d.current_url)
        shoot(driver, "05-product-saved", LAPTOP, mobile=False, folder=FOLDER)

        # Ship the paid order.
        driver.get(f"{base}/admin/orders?status=paid")
        driver.find_element(By.PARTIAL_LINK_TEXT, world["order_no"]).click()
        wait.until(ready.presence_of_element_located((By.NAME, "tracking_no")))
        Select(driver.find_element(By.NAME, "carrier")).select_by_index(1)
        driver.find_element(By.NAME, "tracking_no").send_keys("SF1400000001")
        driver.find_element(By.XPATH, "//button[contains(., '确认发货')]").click()
        wait.until(lambda d: "SF1400000001" in d.find_element(By.TAG_NAME, "body").text)
        shoot(driver, "06-order-shipped", LAPTOP, mobile=False, folder=FOLDER)

        # Pay the withdrawal by hand, with the bank's reference.
        driver.get(f"{base}/admin/withdrawals")
        driver.find_element(By.CSS_SELECTOR, f"a[href$='/admin/withdrawals/{world['withdrawal_id']}']").click()
        wait.until(ready.presence_of_element_located((By.NAME, "reference")))
        driver.find_element(By.NAME, "reference").send_keys("BANK20261201001")
        driver.find_element(By.XPATH, "//button[contains(., '已线下打款')]").click()
        wait.until(lambda d: "BANK20261201001" in d.find_element(By.TAG_NAME, "body").text)
        shoot(driver, "07-withdrawal-paid", LAPTOP, mobile=False, folder=FOLDER)

        # The log says who did all of it.
        driver.get(f"{base}/admin/audit")
        shoot(driver, "08-audit-log", LAPTOP, mobile=False, folder=FOLDER)
    finally:
        driver.quit()

    db.session.rollback()
    assert db.session.get(Application, world["application_id"]).status == "approved"
    product = db.session.scalars(select(Product).where(Product.name == "手作红枣")).one()
    assert (product.price_fen, product.stock, product.on_sale) == (5990, 80, True)
    picture = product.images[0]
    assert re.fullmatch(r"/media/[0-9a-f]+\.(png|jpg|jpeg|webp)", picture), picture
    served = app.test_client().get(picture)
    assert served.status_code == 200 and max(Image.open(io.BytesIO(served.data)).size) <= 1080
    order = db.session.scalars(select(Order).where(Order.order_no == world["order_no"])).one()
    assert order.status == "shipped"
    assert db.session.get(Withdrawal, world["withdrawal_id"]).status == "paid"
    actions = set(db.session.scalars(select(AuditEntry.action).where(AuditEntry.actor == "laoban")))
    assert {"application.approve", "product.create", "order.ship"} <= actions
    assert any(a.startswith("withdrawal.") for a in actions)
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.actor == "laoban")) >= 5


def test_the_back_office_on_a_phone(app, settings, make_staff):  # noqa: F811
    """375 px: the menu becomes a row, lists scroll inside their card, nothing scrolls sideways."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready

    base = settings["app"]["base_url"]
    make_staff("caiwu", "finance")
    driver = chromium(375, 812, phone=True)
    try:
        driver.get(f"{base}/admin/login")
        driver.find_element(By.NAME, "name").send_keys("caiwu")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        waiting(driver, 15).until(ready.title_contains("概览"))
        for path, name in (("/admin/", "09-phone-dashboard"), ("/admin/withdrawals", "10-phone-withdrawals"),
                           ("/admin/orders", "11-phone-orders")):
            driver.get(base + path)
            assert driver.execute_script("return document.documentElement.scrollWidth") <= 375, path
            shoot(driver, name, folder=FOLDER)
        menu = driver.find_element(By.CSS_SELECTOR, ".ad-side nav").text
        assert "提现" in menu and "分销申请" not in menu  # finance sees its own areas only
    finally:
        driver.quit()
