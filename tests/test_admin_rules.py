"""The 规则设置 page (/admin/rules), over real HTTP as staff: the values in
effect and where they come from, saving some of them now or from a later
time with a reason (audited), cancelling a scheduled version, the history,
bad input, an outdated page, and who may see and change what."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser, token  # noqa: F401
from conftest import needs_postgres
from handlers import audit, catalogue, clock, outbox, rules
from handlers.clock import CHINA, now
from models import AuditEntry, RuleVersion, db


@pytest.fixture(autouse=True)
def real_time_after(app):
    clock.forget()
    rules.forget()
    yield
    outbox.rollback()
    clock.back_to_real_time(actor=audit.SYSTEM)
    outbox.commit()
    clock.forget()
    rules.forget()


def url(base: str, path: str = "") -> str:
    return f"{base}/admin/rules{path}"


def form_of(page: str) -> dict[str, str]:
    """What the page's form would send as it stands: every field as shown."""
    form = page[page.index('action="/admin/rules"'):]
    form = form[:form.index("</form>")]
    values = dict(re.findall(r'<input id="rl-f-(\w+)" name="\w+" value="([^"]*)"', form))
    values.update(re.findall(r'<select id="rl-f-(\w+)"[^>]*>.*?<option value="(\w+)" selected', form, re.S))
    values["revision"] = re.search(r'name="revision" value="(\d+)"', form).group(1)
    values["when"] = "now"
    return values


def versions() -> list[RuleVersion]:
    db.session.rollback()
    return list(db.session.scalars(select(RuleVersion).order_by(RuleVersion.id)))


def flash_of(page: str) -> str:
    found = re.search(r'<div class="ad-alert ad-alert--(?:success|error)">([^<]*)</div>', page)
    return found.group(1) if found else ""


def submit(browser, base, page: str, **changes):
    data = {**form_of(page), **changes}
    return browser.post(url(base), data={**data, "csrf_token": token(page)}, allow_redirects=False)


def test_the_page_shows_each_value_and_where_it_comes_from(app, base, staff_browser):
    b = staff_browser("owner")
    page = b.get(url(base))
    assert page.status_code == 200
    assert "一级佣金比例" in page.text and "10%" in page.text and "配置文件中的初始值" in page.text
    assert "两级佣金合计上限 <strong>30%</strong>" in page.text
    assert form_of(page.text)["level1_rate_bp"] == "10" and form_of(page.text)["withdraw_min_fen"] == "1.00"
    assert form_of(page.text)["review"] == "manual"
    assert "已在排队的申请不会自动通过" in page.text


def test_saving_changes_only_what_was_edited_with_who_and_why(app, base, staff_browser):
    b = staff_browser("owner")
    page = b.get(url(base)).text
    res = submit(b, base, page, level1_rate_bp="12.5", withdraw_min_fen="5", reason="双十二活动")
    assert res.status_code == 302, res.text
    saved = versions()
    assert sorted((v.key, v.value) for v in saved) == [("level1_rate_bp", 1250), ("withdraw_min_fen", 500)]
    assert all(v.created_by == b.staff_name and v.reason == "双十二活动" for v in saved)
    after = b.get(url(base)).text
    assert "已保存：" in flash_of(after) and "一级佣金比例 12.5%" in flash_of(after) and "立即生效" in flash_of(after)
    assert "12.5%" in after and f"{b.staff_name}：双十二活动" in after
    [entry] = db.session.scalars(select(AuditEntry).where(AuditEntry.action == "rules.set")).all()
    assert entry.actor == b.staff_name and entry.after["level1_rate_bp"] == 1250
    assert entry.before == {"level1_rate_bp": 1000, "withdraw_min_fen": 100}
    history = b.get(url(base, "/history")).text
    assert history.count('id="rl-v-') == 2 and "生效中" in history and "双十二活动" in history
    only = b.get(url(base, "/history"), params={"key": "withdraw_min_fen"}).text
    assert only.count('id="rl-v-') == 1 and "¥5.00" in only


def test_the_new_rate_reaches_the_product_pages_at_once(app, base, staff_browser):
    b = staff_browser("owner")
    submit(b, base, b.get(url(base)).text, level2_rate_bp="8", reason="加码")
    product = catalogue.add_product("面霜", 9900, 10)
    outbox.commit()
    form = b.get(f"{base}/admin/products/{product.id}").text
    assert "二级 8%" in form


def test_a_later_time_is_scheduled_shown_and_can_be_cancelled(app, base, staff_browser):
    b = staff_browser("owner")
    later = (now() + timedelta(days=2)).astimezone(CHINA)
    res = submit(b, base, b.get(url(base)).text, pay_timeout_minutes="15", when="later",
                 effective_at=later.strftime("%Y-%m-%dT%H:%M"), reason="大促")
    assert res.status_code == 302
    page = b.get(url(base)).text
    assert f"将于 {later:%Y-%m-%d %H:%M} 生效" in flash_of(page)
    assert "待生效" in page and "15 分钟" in page and "30 分钟" in page
    [v] = versions()
    cancel = b.post(url(base, f"/versions/{v.id}/cancel"), data={"csrf_token": token(page), "reason": "不搞了",
                                                                   "revision": form_of(page)["revision"]},
                    allow_redirects=False)
    assert cancel.status_code == 302
    page = b.get(url(base)).text
    assert "已撤销：未付款订单自动取消 15 分钟" in flash_of(page) and "待生效" not in page
    assert versions()[0].cancelled_by == b.staff_name
    assert "已撤销" in b.get(url(base, "/history")).text
    again = b.post(url(base, f"/versions/{v.id}/cancel"), data={"csrf_token": token(page), "reason": "再撤"},
                   allow_redirects=False)
    assert again.status_code == 302 and "已经撤销过了" in flash_of(b.get(url(base)).text)
    missing = b.post(url(base, f"/versions/{v.id + 999}/cancel"), data={"csrf_token": token(page), "reason": "x"})
    assert missing.status_code == 404


@pytest.mark.parametrize("changes, message", [
    ({"level1_rate_bp": "abc"}, "一级佣金比例请填写 0-100 之间的百分数"),
    ({"level1_rate_bp": "26"}, "一级佣金 26% + 二级佣金 5% = 31%，超过两级佣金合计上限 30%"),
    ({"level2_rate_bp": "101"}, "二级佣金比例需在 0%-100% 之间"),
    ({"freeze_days": ""}, "请填写佣金冻结天数"),
    ({"freeze_days": "7天"}, "佣金冻结天数请填写整数"),
    ({"withdraw_fee_bp": "60"}, "提现手续费需在 0%-50% 之间"),
    ({"review": "sometimes"}, "分销申请审核方式只能是"),
    ({"freeze_days": "3", "reason": ""}, "请填写修改原因"),
    ({"freeze_days": "3", "when": "later", "effective_at": ""}, "请选择生效时间"),
    ({"freeze_days": "3", "when": "later", "effective_at": "tomorrow"}, "生效时间的格式应为"),
    ({"freeze_days": "3", "when": "later", "effective_at": "2020-01-01T10:00"}, "生效时间不能早于现在"),
    ({}, "没有修改任何规则"),
])
def test_bad_input_is_refused_on_the_page_and_changes_nothing(app, base, staff_browser, changes, message):
    b = staff_browser("owner")
    page = b.get(url(base)).text
    res = submit(b, base, page, **{"reason": "调整", **changes})
    assert res.status_code == 400 and message in res.text
    assert 'id="rl-error"' in res.text
    for key, typed in changes.items():  # what was typed is kept for correcting
        if key in rules.RULES and key != "review":
            assert f'name="{key}" value="{typed}"' in res.text
    assert versions() == [] and db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action.startswith("rules."))) == 0


def test_a_save_from_an_outdated_page_is_refused(app, base, staff_browser):
    first, second = staff_browser("owner"), staff_browser("owner")
    page1, page2 = first.get(url(base)).text, second.get(url(base)).text
    assert submit(first, base, page1, freeze_days="3", reason="甲").status_code == 302
    res = submit(second, base, page2, freeze_days="5", reason="乙")
    assert res.status_code == 409 and "刚被其他人修改过" in res.text
    assert "3 天" in res.text  # the page shows the value that won
    assert [(v.value, v.reason) for v in versions()] == [(3, "甲")]


def test_switching_review_to_auto_says_the_queue_stays(app, base, staff_browser):
    b = staff_browser("owner")
    submit(b, base, b.get(url(base)).text, review="auto", reason="招募期")
    assert "已在排队的分销申请不会因此自动通过" in flash_of(b.get(url(base)).text)


@pytest.mark.parametrize("role, sees, edits", [("owner", True, True), ("operator", True, False),
                                                ("finance", True, False), ("shipping", False, False)])
def test_roles(app, base, staff_browser, role, sees, edits):
    b = staff_browser(role)
    page = b.get(url(base))
    assert page.status_code == (200 if sees else 403)
    assert b.get(url(base, "/history")).status_code == (200 if sees else 403)
    if sees:
        assert ('action="/admin/rules"' in page.text) == edits
        assert ("规则设置" in page.text) and ("修改规则需要店主账号" in page.text) != edits
    res = post(b, url(base), {"freeze_days": "3", "reason": "试试", "when": "now"})
    assert res.status_code == (302 if edits else 403)
    assert len(versions()) == (1 if edits else 0)
    v_id = versions()[0].id if edits else 1
    assert post(b, url(base, f"/versions/{v_id}/cancel"), {"reason": "x"}).status_code == (302 if edits else 403)


@needs_postgres
def test_two_staff_saving_at_once_one_wins_the_other_is_told(app, base, staff_browser):
    browsers = [staff_browser("owner") for _ in range(3)]
    pages = [b.get(url(base)).text for b in browsers]
    barrier, codes = threading.Barrier(3), []

    def save(b, page, days):
        data = {**form_of(page), "freeze_days": days, "reason": f"改为 {days} 天", "csrf_token": token(page)}
        barrier.wait(timeout=10)
        codes.append(b.post(url(base), data=data, allow_redirects=False).status_code)

    threads = [threading.Thread(target=save, args=(b, p, str(d))) for b, p, d in zip(browsers, pages, (3, 4, 5))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(codes) == [302, 409, 409]
    [v] = versions()
    assert rules.revision() == 1 and v.revision == 1


def test_the_history_exports_as_listed_with_its_filter(app, base, staff_browser):
    from test_admin_exports import export_form, press_export, table

    b = staff_browser("owner")
    submit(b, base, b.get(url(base)).text, level1_rate_bp="12.5", withdraw_min_fen="5", reason="=双十二活动")
    rows = table(press_export(b, base, "/admin/rules/history"))
    assert rows[0][:6] == ["编号", "版本", "规则", "新值", "生效时间", "状态"]
    assert sorted((row[2], row[3], row[5]) for row in rows[1:]) == [
        ("一级佣金比例", "12.5%", "生效中"), ("最低提现金额", "¥5.00", "生效中")]
    assert {row[6] for row in rows[1:]} == {b.staff_name} and {row[7] for row in rows[1:]} == {"'=双十二活动"}
    only = table(press_export(b, base, "/admin/rules/history", key="withdraw_min_fen"))
    assert [row[2] for row in only[1:]] == ["最低提现金额"]
    form = export_form(b.get(url(base, "/history")).text)
    assert post(b, f"{base}/admin/exports", dict(form, key="nothing")).status_code == 400
