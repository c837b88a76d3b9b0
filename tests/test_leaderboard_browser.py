"""The leaderboard page in a phone's browser (375 px) and a laptop's
(1280 px): screenshots in tests/screenshots/ to look at."""
from __future__ import annotations

from sqlalchemy import select

from handlers import applications, audit, outbox
from models import User, db
from test_browser_buy import chromium, shoot
from test_leaderboard import drain, real_time_after, seller, sell  # noqa: F401  (fixture)


def test_the_leaderboard_page_at_375_and_1280_px(app, jobs, person, base):
    browser = person("王小明")
    user = db.session.scalars(select(User).where(User.openid == browser.openid)).one()
    application = applications.apply_for_distributor(user, "王小明", "13800138000", "想分享", "")
    outbox.commit()
    mine = applications.approve_application(application.id, actor=audit.Actor("test"))
    outbox.commit()
    names = ["李大强", "张三丰", "欧阳小娟", "陈静", "赵", "孙悟空", "周杰伦", "吴彦祖"]
    for i, name in enumerate(names):
        sell(seller(name), 10000 - 1000 * (i // 2))
    sell(mine, 5500)
    drain(jobs)
    for width, phone in ((375, True), (1280, False)):
        driver = chromium(width, phone=phone)
        try:
            driver.get(f"{base}/h5/static/fenxiao.css")
            for cookie in browser.cookies:
                driver.add_cookie({"name": cookie.name, "value": cookie.value, "path": "/"})
            driver.get(f"{base}/h5/leaderboard?period=day")
            text = driver.find_element("tag name", "body").text
            assert "李*强" in text and "欧*娟" in text and "王小明" in text and "距上一名还差 ¥15.00" in text
            shoot(driver, f"leaderboard-{width}", width=width, mobile=phone)
        finally:
            driver.quit()
