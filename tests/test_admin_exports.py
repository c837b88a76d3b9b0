"""Exports (/admin/exports and every list's 导出 CSV button), over real HTTP as
staff: the CSV is what the list shows for the same filters (every page), in
UTF-8 with a BOM, cells that a spreadsheet would run made inert; a large
export is a background job with a download page; who may export; bad input;
a double click; the audit rows."""
from __future__ import annotations

import csv
import io
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from app.config import build
from conftest import needs_postgres
from handlers import exports, outbox
from handlers.clock import now
from models import AuditEntry, Export, Staff, db
from test_admin_orders import customer_of, distributor, paid, placed, product
from test_transfer import ask, rich  # noqa: F401


@pytest.fixture
def folder(app, settings, tmp_path):
    """[admin] exports_dir in this test's own folder."""
    raw = {section: dict(values) for section, values in settings.items()}
    raw["admin"]["exports_dir"] = str(tmp_path / "exports")
    app.config["SETTINGS"] = build(raw, {}, "tests")
    yield tmp_path / "exports"
    app.config["SETTINGS"] = settings


def export_form(page: str) -> dict[str, str]:
    """The hidden fields of a list page's 导出 CSV form, as the browser sends them."""
    found = re.search(r'<form class="ad-actions fx-export".*?</form>', page, re.S)
    assert found, "no export button on the page"
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', found.group(0)))


def press_export(browser, base: str, path: str, **params):
    """Open a list with filters and press its 导出 CSV button."""
    page = browser.get(f"{base}{path}", params=params)
    assert page.status_code == 200, page.text
    return browser.post(f"{base}/admin/exports", data=export_form(page.text), allow_redirects=False)


def table(res) -> list[list[str]]:
    assert res.status_code == 200, res.text
    assert res.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in res.headers["Content-Disposition"]
    text = res.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:])))


def log_rows(n: int, action: str = "bulk.test", reason: str = "", actor: str = "system") -> None:
    """``n`` audit rows at once (the log is what most lists are easiest to fill from)."""
    at = now()
    db.session.execute(insert(AuditEntry), [
        {"at": at, "actor": actor, "action": action, "target_type": "thing", "target_id": str(i), "reason": reason,
         "ip": "", "staff_id": None} for i in range(n)])
    db.session.commit()


def audit_of(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def all_pages(browser, base: str, path: str, pattern: str, **params) -> list[str]:
    """Every id the list shows, following its 下一页 links to the end."""
    ids, url = [], f"{base}{path}"
    while url:
        page = browser.get(url, params=params)
        params = {}
        assert page.status_code == 200
        ids += re.findall(pattern, page.text)
        more = re.search(r'href="([^"]+)">下一页</a>', page.text)
        url = base + more.group(1).replace("&amp;", "&") if more else None
    return ids


# -- the CSV -----------------------------------------------------------------------------------

def test_cells_a_spreadsheet_would_run_are_inert_and_quoted(app, base, staff_browser):
    for i, text in enumerate(["=HYPERLINK(\"http://x\")", "+1+1", "-2", "@SUM(A1)", "\tcmd", "\rcmd", "普通说明"]):
        log_rows(1, action=f"inj.{i}", reason=text)
    b = staff_browser("owner")
    res = press_export(b, base, "/admin/audit", action="inj.")
    raw = res.content.decode("utf-8")
    rows = table(res)
    assert rows[0] == ["编号", "时间", "操作人", "操作", "对象类型", "对象编号", "原因", "IP"]
    reasons = [row[6] for row in rows[1:]]
    assert reasons == ["普通说明", "'\rcmd", "'\tcmd", "'@SUM(A1)", "'-2", "'+1+1", "'=HYPERLINK(\"http://x\")"]
    assert '"\'=HYPERLINK(""http://x"")"' in raw  # quoted, the quote inside doubled
    assert all(line.startswith('"') for line in raw[1:].split("\r\n") if line)
    assert exports.inert("=1") == "'=1" and exports.inert("a=1") == "a=1" and exports.inert(None) == ""


def test_the_export_is_every_page_of_the_list_with_its_filters(app, base, staff_browser):
    log_rows(120, action="mine.a", actor="小王")
    log_rows(30, action="other.b", actor="小李")
    b = staff_browser("finance")
    shown = all_pages(b, base, "/admin/audit", r'href="/admin/audit/(\d+)">详情', action="mine.")
    assert len(shown) == 120  # three pages of the list
    rows = table(press_export(b, base, "/admin/audit", action="mine."))
    assert [row[0] for row in rows[1:]] == shown
    assert {row[2] for row in rows[1:]} == {"小王"}
    paged = b.get(f"{base}/admin/audit", params={"action": "mine.", "before": shown[49]})
    assert export_form(paged.text).get("before") is None  # the second page exports the whole list too
    assert len(table(b.post(f"{base}/admin/exports", data=export_form(paged.text)))) == 121


def test_products_export_as_listed(app, base, staff_browser):
    made = [product(1000 + i) for i in range(60)]
    catalogue_off = made[:5]
    from handlers import catalogue
    from handlers.audit import SYSTEM
    for p in catalogue_off:
        catalogue.set_on_sale(p.id, False, actor=SYSTEM)
    outbox.commit()
    b = staff_browser("owner")
    shown = all_pages(b, base, "/admin/products", r'<tr id="product-(\d+)"', shelf="on")
    rows = table(press_export(b, base, "/admin/products", shelf="on"))
    assert rows[0][:5] == ["编号", "名称", "价格（元）", "库存", "已售"]
    assert [row[0] for row in rows[1:]] == shown and len(shown) == 55
    assert rows[1][2] == "10.59" and rows[1][5] == "上架"


def test_orders_and_applications_export(app, base, staff_browser):
    seller = distributor("卖家甲")
    buyer = customer_of(seller)
    one, two = paid(buyer, {product().id: 2}), placed(buyer, {product(500).id: 1})
    b = staff_browser("owner")
    rows = table(press_export(b, base, "/admin/orders"))
    assert rows[0][0] == "订单号" and [row[0] for row in rows[1:]] == [two.order_no, one.order_no]
    assert rows[2][6] == "200.00" and rows[2][9] == "卖家甲"
    only_paid = table(press_export(b, base, "/admin/orders", status="paid"))
    assert [row[0] for row in only_paid[1:]] == [one.order_no]

    applied = table(press_export(b, base, "/admin/applications", status="all"))
    assert applied[0][:3] == ["编号", "姓名", "手机号"] and "卖家甲" in [row[1] for row in applied[1:]]
    assert len(table(press_export(b, base, "/admin/applications"))) == 1  # none waiting: the header alone


def test_withdrawals_export(app, base, staff_browser, rich):
    d = rich()
    w = ask(d, 3000)
    b = staff_browser("finance")
    listed = table(press_export(b, base, "/admin/withdrawals", state="requested"))
    assert [row[0] for row in listed[1:]] == [str(w.id)] and listed[1][3] == "30.00" and listed[1][6] == "待处理"


def test_distributors_export_as_listed(app, base, staff_browser):
    sellers = [distributor(name) for name in ("卖家甲", "卖家乙", "卖家丙")]
    paid(customer_of(sellers[0]), {product().id: 2})
    b = staff_browser("finance")
    shown = all_pages(b, base, "/admin/distributors", r'href="/admin/distributors/(\d+)"')
    rows = table(press_export(b, base, "/admin/distributors"))
    assert rows[0][:4] == ["编号", "姓名", "手机号", "级别"]
    assert [row[0] for row in rows[1:]] == list(dict.fromkeys(shown)) and len(rows) == 4
    first = next(row for row in rows[1:] if row[1] == "卖家甲")
    assert first[8] == "1" and first[10] == "200.00"  # one customer, ¥200 of sales
    one = table(press_export(b, base, "/admin/distributors", q="卖家乙"))
    assert [row[1] for row in one[1:]] == ["卖家乙"]
    assert b.post(f"{base}/admin/exports", data={**export_form(b.get(f"{base}/admin/distributors").text),
                                                 "level": "3"}).status_code == 400


# -- large exports -------------------------------------------------------------------------------

def test_a_large_export_is_a_job_with_a_download_page(app, base, staff_browser, folder, jobs):
    log_rows(exports.STREAM_LIMIT + 1, action="big.one")
    b = staff_browser("finance")
    res = press_export(b, base, "/admin/audit", action="big.")
    assert res.status_code == 302
    job_url = base + res.headers["Location"]
    assert re.search(r"/admin/exports/\d+$", job_url)
    jobs.run()
    page = b.get(job_url)
    assert "可下载" in page.text and f"共 {exports.STREAM_LIMIT + 1} 行" in page.text
    listing = b.get(f"{base}/admin/exports")
    assert "操作日志" in listing.text and "可下载" in listing.text
    download = re.search(r'href="(/admin/exports/\d+/download)"', listing.text).group(1)
    rows = table(b.get(base + download))
    assert len(rows) == exports.STREAM_LIMIT + 2 and rows[1][3] == "big.one"
    assert [p.suffix for p in folder.iterdir()] == [".csv"]
    [created] = audit_of("export.create")
    assert created.actor == b.staff_name and created.after == {"list": "audit", "filters": {"action": "big."}}
    [fetched] = audit_of("export.download")
    assert fetched.target_id == created.target_id and fetched.after["rows"] == exports.STREAM_LIMIT + 1


def test_the_job_writes_the_file_once(app, make_staff, folder):
    """A job delivered twice (RQ retries, the relay) writes nothing the second time."""
    log_rows(3, action="twice.")
    owner = make_staff("twice", "owner")
    job = Export(request_key=exports.new_request_key(), staff_id=owner.id, source="audit",
                 filters={"action": "twice."}, file_name="操作日志.csv")
    db.session.add(job)
    outbox.commit()
    exports.build(job.id)
    exports.build(job.id)
    db.session.rollback()
    done = db.session.get(Export, job.id)
    assert done.state == "done" and done.rows == 3 and done.expires_at > now()
    assert [p.name for p in folder.iterdir()] == [done.stored]
    text = (folder / done.stored).read_text("utf-8")
    assert text.startswith("\ufeff") and text.count("twice.") == 3


def test_a_job_that_cannot_write_its_file_says_why(app, base, staff_browser, folder):
    b = staff_browser("owner")
    db.session.rollback()
    owner = db.session.scalars(select(Staff).where(Staff.name == b.staff_name)).one()
    job = Export(request_key=exports.new_request_key(), staff_id=owner.id, source="audit",
                 filters={"since": "yesterday"}, file_name="操作日志.csv")
    db.session.add(job)
    outbox.commit()
    exports.build(job.id)
    page = b.get(f"{base}/admin/exports/{job.id}")
    assert "失败" in page.text and "开始日期的格式" in page.text
    refused = b.get(f"{base}/admin/exports/{job.id}/download")
    assert refused.status_code == 400 and "导出失败" in refused.text
    assert list(folder.iterdir()) == []


def test_files_expire_after_their_days(app, base, staff_browser, folder, jobs):
    log_rows(exports.STREAM_LIMIT + 1, action="old.one")
    b = staff_browser("owner")
    job_url = base + press_export(b, base, "/admin/audit", action="old.").headers["Location"]
    jobs.run()
    assert len(list(folder.iterdir())) == 1
    assert exports.expire(now() + exports.KEEP + timedelta(minutes=1)) == 1
    outbox.commit()
    assert list(folder.iterdir()) == []
    assert "已过期" in b.get(job_url).text
    gone = b.get(job_url + "/download")
    assert gone.status_code == 400 and "文件已过期" in gone.text


def test_the_download_page_is_mine_alone(app, base, staff_browser, folder, jobs):
    log_rows(exports.STREAM_LIMIT + 1, action="big.one")
    mine, theirs = staff_browser("owner"), staff_browser("finance")
    job_url = base + press_export(mine, base, "/admin/audit", action="big.").headers["Location"]
    jobs.run()
    assert "还没有后台导出" in theirs.get(f"{base}/admin/exports").text
    assert theirs.get(job_url).status_code == 404
    assert theirs.get(job_url + "/download").status_code == 404
    assert mine.get(job_url + "/download").status_code == 200


# -- who may export ---------------------------------------------------------------------------------

def test_only_staff_who_see_the_list_may_export_it(app, base, staff_browser):
    log_rows(3, action="x.y")
    operator, finance, shipping = staff_browser("operator"), staff_browser("finance"), staff_browser("shipping")
    assert "导出 CSV" not in operator.get(f"{base}/admin/products").text  # no ``exports`` permission
    assert operator.get(f"{base}/admin/exports").status_code == 403
    form = export_form(finance.get(f"{base}/admin/orders").text)
    assert post(operator, f"{base}/admin/exports", form).status_code == 403
    assert post(shipping, f"{base}/admin/exports", form).status_code == 403
    # finance may export, but not a list its role does not show
    refused = post(finance, f"{base}/admin/exports", dict(form, export_list="applications"))
    assert refused.status_code == 403 and "不能导出" in refused.text
    assert audit_of("export.download") == []


def test_the_staff_list_exports_for_the_owner_only(app, base, staff_browser):
    owner, finance = staff_browser("owner"), staff_browser("finance")
    rows = table(press_export(owner, base, "/admin/staff"))
    assert rows[0] == ["编号", "用户名", "角色", "两步验证", "状态", "停用时间", "最近登录"]
    listed = {row[1]: row for row in rows[1:]}
    assert listed[owner.staff_name][2] == "店主" and listed[finance.staff_name][2] == "财务"
    assert listed[owner.staff_name][4] == "正常" and listed[owner.staff_name][6] != "从未登录"
    form = export_form(owner.get(f"{base}/admin/staff").text)
    refused = post(finance, f"{base}/admin/exports", dict(form, csrf_token=export_form(
        finance.get(f"{base}/admin/orders").text)["csrf_token"]))
    assert refused.status_code == 403


# -- bad input, double clicks -------------------------------------------------------------------------

def test_bad_input_is_refused_in_words_and_changes_nothing(app, base, staff_browser):
    b = staff_browser("owner")
    form = export_form(b.get(f"{base}/admin/orders").text)
    unknown = b.post(f"{base}/admin/exports", data=dict(form, export_list="nothing"))
    assert unknown.status_code == 404 and "没有这个可导出的列表" in unknown.text
    stale = b.post(f"{base}/admin/exports", data=dict(form, request_key="x"))
    assert stale.status_code == 400 and "请刷新页面" in stale.text
    bad_date = b.post(f"{base}/admin/exports", data=dict(form, since="yesterday"))
    assert bad_date.status_code == 400 and "日期的格式" in bad_date.text
    bad_status = b.post(f"{base}/admin/exports", data=dict(form, status="lost"))
    assert bad_status.status_code == 400 and "没有这个订单状态" in bad_status.text
    long = b.post(f"{base}/admin/exports", data=dict(form, order_no="1" * 5000, export_list="orders" * 200))
    assert long.status_code in (400, 404)
    no_csrf = b.post(f"{base}/admin/exports", data={k: v for k, v in form.items() if k != "csrf_token"})
    assert no_csrf.status_code == 400
    assert b.get(f"{base}/admin/exports/999999").status_code == 404
    assert b.get(f"{base}/admin/exports/999999/download").status_code == 404
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Export)) == 0
    assert audit_of("export.download") == [] and audit_of("export.create") == []


def test_a_double_click_makes_one_job(app, base, staff_browser, folder, jobs):
    log_rows(exports.STREAM_LIMIT + 1, action="big.one")
    b = staff_browser("owner")
    form = export_form(b.get(f"{base}/admin/audit", params={"action": "big."}).text)
    first = b.post(f"{base}/admin/exports", data=form, allow_redirects=False)
    second = b.post(f"{base}/admin/exports", data=form, allow_redirects=False)
    assert first.headers["Location"] == second.headers["Location"]
    jobs.run()
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Export)) == 1
    assert len(audit_of("export.create")) == 1
    other = staff_browser("finance")  # another's key is not theirs to reuse
    stolen = post(other, f"{base}/admin/exports", {k: v for k, v in form.items() if k != "csrf_token"})
    assert stolen.status_code == 400


@needs_postgres
def test_clicks_at_once_make_one_job(app, base, staff_browser, folder, jobs):
    log_rows(exports.STREAM_LIMIT + 1, action="big.one")
    b = staff_browser("owner")
    form = export_form(b.get(f"{base}/admin/audit", params={"action": "big."}).text)
    answers, gate = [], threading.Barrier(4)

    def click():
        gate.wait()
        answers.append(b.post(f"{base}/admin/exports", data=form, allow_redirects=False))

    threads = [threading.Thread(target=click) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [302] * 4
    assert len({a.headers["Location"] for a in answers}) == 1
    jobs.run()
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Export)) == 1
    assert len(audit_of("export.create")) == 1
    assert "可下载" in b.get(base + answers[0].headers["Location"]).text


def test_in_a_browser_at_1280_and_375_px(app, settings, make_staff, folder, jobs):
    """Press 导出 CSV on a long filtered log, land on the export's page, see it ready in 我的导出."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from admin_helpers import PASSWORD
    from test_browser_buy import SHOTS, chromium, shoot

    shots = SHOTS / "exports"
    base = settings["app"]["base_url"]
    log_rows(exports.STREAM_LIMIT + 1, action="big.one", reason="=1+1")
    make_staff("laoban", "owner")
    driver = chromium(1280, 900, phone=False)
    try:
        wait = WebDriverWait(driver, 15)
        driver.get(f"{base}/admin/login")
        driver.find_element(By.NAME, "name").send_keys("laoban")
        driver.find_element(By.NAME, "password").send_keys(PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(ready.title_contains("概览"))
        driver.get(f"{base}/admin/audit?action=big.")
        shoot(driver, "01-list-with-button-1280", 1280, mobile=False, folder=shots)
        shoot(driver, "01-list-with-button-375", 375, folder=shots)
        driver.find_element(By.CSS_SELECTOR, "form.fx-export button").click()
        wait.until(ready.url_matches(r"/admin/exports/\d+$"))
        jobs.run()
        driver.refresh()
        wait.until(ready.text_to_be_present_in_element((By.ID, "export-state"), "可下载"))
        shoot(driver, "02-export-ready-1280", 1280, mobile=False, folder=shots)
        shoot(driver, "02-export-ready-375", 375, folder=shots)
        driver.get(f"{base}/admin/exports")
        assert "操作日志" in driver.find_element(By.ID, "export-list").text
        shoot(driver, "03-my-exports-1280", 1280, mobile=False, folder=shots)
        shoot(driver, "03-my-exports-375", 375, folder=shots)
    finally:
        driver.quit()
