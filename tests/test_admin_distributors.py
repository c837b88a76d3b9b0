"""The merchant's distributors pages (/admin/distributors), over real HTTP as
staff: the list with its figures and filters, one distributor's team and
records, freezing and unfreezing (a frozen distributor earns nothing and
cannot withdraw, and is told), and moving a distributor or a customer to
another referrer where two levels and no cycle allow — each audited."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from app.config import build
from conftest import needs_postgres
from distribution_helpers import make_distributor, make_user
from handlers import distributor_admin, distributor_pages, orders, outbox, referrals, withdrawals
from handlers.audit import Actor
from handlers.errors import Conflict
from models import AuditEntry, CommissionRow, Distributor, Notification, OutboxRow, User, db
from test_ledger import customer_of, paid_order, product
from test_money_rules import owing  # noqa: F401
from test_transfer import ask, balance, fresh, rich  # noqa: F401


def url(base: str, d_id: int, action: str = "") -> str:
    return f"{base}/admin/distributors/{d_id}" + (f"/{action}" if action else "")


def again(d: Distributor) -> Distributor:
    db.session.rollback()
    return db.session.get(Distributor, d.id)


def referrer_of(user_id: int) -> int | None:
    db.session.rollback()
    return db.session.get(User, user_id).referrer_id


def audits(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def notices(d: Distributor, kind: str) -> list[Notification]:
    db.session.rollback()
    return list(db.session.scalars(select(Notification).where(Notification.user_id == d.user_id,
                                                              Notification.kind == kind)))


@pytest.fixture
def team(app):
    """一级 with a customer who bought ¥100.00 and a level-2 (二级) with a
    customer of their own; another level-1 (别家) on its own."""
    top = make_distributor("一级")
    top.real_name, top.mobile = "王一级", "13900000001"
    second = make_distributor("二级", referrer=top)
    second.real_name, second.mobile = "李二级", "13900000002"
    other = make_distributor("别家")
    other.real_name, other.mobile = "赵别家", "13900000003"
    outbox.commit()
    buyer = customer_of(top)
    paid_order(buyer, {product(10000).id: 1})
    customer_of(second)
    return top, second, other, buyer


# -- the list and the detail -------------------------------------------------------------------------

def test_the_list_shows_each_distributors_figures(team, base, staff_browser):
    top, second, other, _ = team
    b = staff_browser("finance")
    page = b.get(f"{base}/admin/distributors")
    assert page.status_code == 200
    row = page.text.split(f'id="ds-{top.id}"')[1].split("</tr>")[0]
    assert "王一级" in row and top.unit.invite_code in row and "一级" in row
    cells = [c.strip() for c in row.split('class="num">')[1:]]
    # customers, level-2s, gross, net, frozen commission, withdrawable, withdrawn, owed
    assert [c.split("<")[0] for c in cells] == ["1", "1", "¥100.00", "¥100.00", "¥10.00", "¥0.00", "¥0.00", "—"]
    second_row = page.text.split(f'id="ds-{second.id}"')[1].split("</tr>")[0]
    assert "上级 王一级" in second_row


def test_the_figures_show_what_a_claw_back_left_owing(owing, base, staff_browser):
    d, _ = owing
    figures = distributor_pages.figures_of([d])[d.id]
    assert (figures.gross_fen, figures.net_fen, figures.owed_fen) == (100000, 0, 10000)
    page = staff_browser("owner").get(f"{base}/admin/distributors")
    row = page.text.split(f'id="ds-{d.id}"')[1].split("</tr>")[0]
    assert "¥1000.00" in row and "¥100.00" in row and "ad-tag--danger" in row


@pytest.mark.parametrize("args,shown,hidden", [
    ({"level": "2"}, ["second"], ["top", "other"]),
    ({"level": "1"}, ["top", "other"], ["second"]),
    ({"q": "王一"}, ["top"], ["second", "other"]),
    ({"q": "13900000003"}, ["other"], ["top", "second"]),
    ({"parent": "TOP"}, ["second"], ["top", "other"]),
    ({"state": "frozen"}, [], ["top", "second", "other"]),
    ({"from": "2000-01-01", "to": "2999-12-31"}, ["top", "second", "other"], []),
    ({"to": "2000-01-01"}, [], ["top", "second", "other"]),
])
def test_the_list_filters(team, base, staff_browser, args, shown, hidden):
    top, second, other, _ = team
    people = {"top": top, "second": second, "other": other}
    args = {k: (str(top.id) if v == "TOP" else v) for k, v in args.items()}
    page = staff_browser("operator").get(f"{base}/admin/distributors", params=args)
    assert page.status_code == 200
    for name in shown:
        assert f'id="ds-{people[name].id}"' in page.text, name
    for name in hidden:
        assert f'id="ds-{people[name].id}"' not in page.text, name


def test_search_by_invite_code_and_keyset_pages(team, base, staff_browser):
    top, second, other, _ = team
    b = staff_browser("owner")
    page = b.get(f"{base}/admin/distributors", params={"q": second.unit.invite_code.lower()})
    assert f'id="ds-{second.id}"' in page.text and f'id="ds-{top.id}"' not in page.text
    paged = b.get(f"{base}/admin/distributors", params={"before": other.id})
    assert f'id="ds-{other.id}"' not in paged.text and f'id="ds-{top.id}"' in paged.text
    listed = distributor_pages.listing({}, limit=2)
    assert [r.id for r in listed.rows] == [other.id, second.id, top.id]  # limit + 1: a next page exists
    assert [r.id for r in distributor_pages.rows_for_export({}, page=2)][:3] == [other.id, second.id, top.id]


@pytest.mark.parametrize("args,words", [
    ({"level": "3"}, "级别"), ({"state": "gone"}, "没有这个状态"), ({"from": "yesterday"}, "格式应为"),
    ({"parent": "abc"}, "编号"), ({"before": "-1"}, None), ({"q": "%_\\"}, None)])
def test_bad_filters_are_said_in_words(team, base, staff_browser, args, words):
    page = staff_browser("owner").get(f"{base}/admin/distributors", params=args)
    if words:
        assert page.status_code == 400 and words in page.text
    else:
        assert page.status_code == 200


def test_the_detail_shows_the_team_orders_ledger_touches_and_withdrawals(team, rich, base, staff_browser):
    top, second, other, buyer = team
    b = staff_browser("finance")
    page = b.get(url(base, top.id))
    assert page.status_code == 200
    tree = page.text.split('id="ds-tree"')[1].split('class="ad-card"')[0]
    assert tree.index("王一级") < tree.index("李二级") and f"#{buyer.id}" in tree
    assert "ds-orders" in page.text and "¥100.00" in page.text.split('id="ds-orders"')[1]
    assert "佣金" in page.text.split('id="ds-ledger"')[1] and "¥10.00" in page.text.split('id="ds-ledger"')[1]
    assert "绑定" in page.text.split('id="ds-touches"')[1]
    assert 'id="ds-actions"' not in page.text  # finance views, does not act
    level2 = b.get(url(base, second.id))
    tree = level2.text.split('id="ds-tree"')[1]
    assert "王一级" in tree and "ds-here" in tree
    d = rich()
    w = ask(d, 3000)
    assert f"#{w.id}" in b.get(url(base, d.id)).text.split('id="ds-withdrawals"')[1]
    assert b.get(url(base, 999999)).status_code == 404


# -- freeze and unfreeze -----------------------------------------------------------------------------

def test_freeze_stops_commission_and_withdrawals_and_tells_the_distributor(rich, base, staff_browser):
    d = rich()
    b = staff_browser("operator")
    res = post(b, url(base, d.id, "freeze"), {"reason": "违规宣传"}, htmx=True)
    assert res.status_code == 200 and "已冻结" in res.text
    frozen = again(d)
    assert frozen.status == "frozen" and frozen.frozen_reason == "违规宣传"
    [n] = notices(d, "distributor_frozen")
    assert "违规宣传" in n.body
    [row] = audits("distributor.freeze")
    assert row.actor == b.staff_name and row.reason == "违规宣传"
    assert row.before["status"] == "active" and row.after["status"] == "frozen"
    # No new commission, no withdrawal; what was earned stays.
    before = db.session.scalar(select(func.count()).select_from(CommissionRow))
    order = paid_order(make_user(), {product(20000).id: 1})
    assert order.distributor_id is None  # a frozen distributor's customers buy in the merchant's unit
    paid_order(frozen.user, {product(20000).id: 1})
    assert db.session.scalar(select(func.count()).select_from(CommissionRow)) == before
    with pytest.raises(Conflict) as exc:
        withdrawals.request_withdrawal(again(d), 1000, withdrawals.new_request_key())
    outbox.rollback()
    assert "冻结" in exc.value.message and balance(d) == (10000, 0, 0)
    page = b.get(url(base, d.id))
    assert 'id="ds-frozen"' in page.text and "违规宣传" in page.text
    # Unfrozen: earns and withdraws again, and is told.
    res = post(b, url(base, d.id, "unfreeze"), {"reason": "已整改"}, htmx=True)
    assert res.status_code == 200 and again(d).status == "active" and again(d).frozen_reason is None
    assert len(notices(d, "distributor_unfrozen")) == 1
    assert ask(again(d), 1000).status == "requested"


def test_a_pending_withdrawal_is_not_paid_while_frozen(rich, base, staff_browser):
    d = rich()
    w = ask(d, 3000)
    post(staff_browser("owner"), url(base, d.id, "freeze"), {"reason": "核查中"}, htmx=True)
    res = post(staff_browser("finance"), f"{base}/admin/withdrawals/{w.id}/pay", {"reference": "网银 1"}, htmx=True)
    assert res.status_code == 409 and "冻结" in res.text
    assert fresh(w.id).status == "requested"


def test_the_freeze_notice_goes_to_wechat_as_a_template_message(app, settings):
    d = make_distributor("小冻")
    distributor_admin.freeze(d.id, "核查", actor=Actor("test"))
    outbox.commit()
    sent = db.session.scalars(select(OutboxRow).where(OutboxRow.task == "wxbot.jobs.send_template")).all()
    assert any(settings["templates"]["distributor_frozen"] in str(row.args) and "核查" in str(row.args)
               for row in sent)
    assert len(notices(d, "distributor_frozen")) == 1


def test_the_freeze_notice_goes_to_wechat_as_text_without_a_template(app, settings):
    raw = {section: dict(values) for section, values in settings.items()}
    raw["templates"]["distributor_frozen"] = ""  # the merchant has not set this template up
    app.config["SETTINGS"] = build(raw, {}, "tests")
    try:
        d = make_distributor("小冻")
        d.user.subscription = "subscribed"  # customer-service messages reach followers only
        outbox.commit()
        distributor_admin.freeze(d.id, "核查", actor=Actor("test"))
        outbox.commit()
    finally:
        app.config["SETTINGS"] = settings
    texts = db.session.scalars(select(OutboxRow).where(OutboxRow.task == "wxbot.jobs.send_text")).all()
    assert any("分销资格已冻结" in str(row.args) and "核查" in str(row.args) for row in texts)
    assert len(notices(d, "distributor_frozen")) == 1


@pytest.mark.parametrize("action,data,status,words", [
    ("freeze", {"reason": "  "}, 400, "冻结原因"), ("freeze", {"reason": "长" * 201}, 400, "200"),
    ("unfreeze", {"reason": "好了"}, 409, "没有被冻结"),
    ("move", {"target": "", "reason": "调整"}, 400, "新推荐人"),
    ("move", {"target": "999999", "reason": "调整"}, 404, "没有编号"),
    ("move", {"target": "ZZZZZZ", "reason": "调整"}, 404, "邀请码"),
    ("move", {"target": "12345678901234", "reason": "调整"}, 404, "没有编号"),
    ("move", {"target": "0", "reason": ""}, 400, "调整原因"),
    ("customers/move", {"user_id": "abc", "target": "0", "reason": "调整"}, 404, "顾客不存在")])
def test_bad_input_changes_nothing(team, base, staff_browser, action, data, status, words):
    top, *_ = team
    res = post(staff_browser("owner"), url(base, top.id, action), data, htmx=True)
    assert res.status_code == status and words in res.text, res.text
    assert again(top).status == "active" and again(top).level == 1
    assert audits("distributor.") == [] and audits("customer.") == []


def test_roles(team, base, staff_browser):
    top, *_ = team
    for role in ("finance", "shipping"):
        b = staff_browser(role)
        assert post(b, url(base, top.id, "freeze"), {"reason": "x"}).status_code == 403
        assert post(b, url(base, top.id, "move"), {"target": "0", "reason": "x"}).status_code == 403
    shipping = staff_browser("shipping")
    assert shipping.get(f"{base}/admin/distributors").status_code == 403
    assert shipping.get(url(base, top.id)).status_code == 403
    assert again(top).status == "active"


# -- moves -------------------------------------------------------------------------------------------

def test_moving_a_level1_with_level2s_under_another_is_refused(team, base, staff_browser):
    top, second, other, _ = team
    res = post(staff_browser("owner"), url(base, top.id, "move"),
               {"target": str(other.id), "reason": "合并团队", "was": "0"}, htmx=True)
    assert res.status_code == 409 and "三级" in res.text
    assert again(top).level == 1 and audits("distributor.move") == []


def test_moving_under_ones_own_recruit_is_a_cycle(app, base, staff_browser):
    top = make_distributor("一级")
    recruiter = make_distributor("二级甲", referrer=top)
    recruit = make_distributor("二级乙", referrer=recruiter)  # level 2 under top, brought by recruiter
    assert recruit.parent_id == top.id
    b = staff_browser("owner")
    res = post(b, url(base, recruiter.id, "move"), {"target": str(recruit.id), "reason": "调"}, htmx=True)
    assert res.status_code == 409 and "循环" in res.text
    res = post(b, url(base, top.id, "move"), {"target": recruit.unit.invite_code, "reason": "调"}, htmx=True)
    assert res.status_code == 409 and "循环" in res.text
    res = post(b, url(base, top.id, "move"), {"target": str(top.id), "reason": "调"}, htmx=True)
    assert res.status_code == 400 and "自己名下" in res.text
    assert audits("distributor.move") == []


def test_an_all_digit_invite_code_from_before_still_names_its_distributor(app, base, staff_browser):
    top = make_distributor("一级")
    older = make_distributor("老码")
    older.unit.invite_code = "234567"  # made before codes had to hold a letter
    outbox.commit()
    b = staff_browser("owner")
    res = post(b, url(base, top.id, "move"), {"target": "234567", "reason": "调"}, htmx=True)
    assert res.status_code == 200, res.text
    assert again(top).level == 2 and again(top).parent_id == older.id
    res = post(b, url(base, top.id, "move"), {"target": "765432", "reason": "调"}, htmx=True)
    assert res.status_code == 404 and "765432" in res.text


def test_a_move_changes_future_orders_never_past_commission(team, base, staff_browser, settings):
    top, second, other, _ = team
    buyer = customer_of(second)
    first = paid_order(buyer, {product(10000).id: 1})
    assert (first.distributor_id, first.parent_distributor_id) == (second.id, top.id)
    b = staff_browser("operator")
    res = post(b, url(base, second.id, "move"),
               {"target": other.unit.invite_code, "reason": "客户要求", "was": str(top.user_id)}, htmx=True)
    assert res.status_code == 200 and "赵别家" in res.text
    moved = again(second)
    assert (moved.level, moved.parent_id) == (2, other.id) and referrer_of(second.user_id) == other.user_id
    [row] = audits("distributor.move")
    assert row.before["parent_id"] == top.id and row.after["parent_id"] == other.id and row.reason == "客户要求"
    later = paid_order(buyer, {product(10000).id: 1})
    assert (later.distributor_id, later.parent_distributor_id) == (second.id, other.id)
    db.session.rollback()
    level2_rows = {r.order_id: r.distributor_id for r in db.session.scalars(
        select(CommissionRow).where(CommissionRow.level == 2, CommissionRow.order_id.in_([first.id, later.id])))}
    assert level2_rows == {first.id: top.id, later.id: other.id}
    # To the merchant: level 1, organic.
    res = post(b, url(base, second.id, "move"), {"target": "0", "reason": "独立", "was": str(other.user_id)},
               htmx=True)
    assert res.status_code == 200 and again(second).level == 1 and again(second).parent_id is None
    assert referrer_of(second.user_id) is None and db.session.get(User, second.user_id).source == "organic"
    # Nothing to change: said so.
    res = post(b, url(base, second.id, "move"), {"target": "0", "reason": "独立", "was": "0"}, htmx=True)
    assert res.status_code == 409 and "无需调整" in res.text


def test_a_level1_without_level2s_moves_under_a_level2s_level1(team, base, staff_browser):
    top, second, other, _ = team
    res = post(staff_browser("owner"), url(base, other.id, "move"), {"target": str(second.id), "reason": "并入"},
               htmx=True)
    assert res.status_code == 200
    moved = again(other)
    assert (moved.level, moved.parent_id) == (2, top.id) and referrer_of(other.user_id) == second.user_id
    assert db.session.get(User, other.user_id).source == "invite"


def test_moving_a_customer(team, base, staff_browser):
    top, second, other, buyer = team
    b = staff_browser("owner")
    page = b.get(url(base, top.id))
    assert "ds-move-customer" in page.text and f'value="{buyer.id}"' in page.text
    res = post(b, url(base, top.id, "customers/move"),
               {"user_id": str(buyer.id), "target": str(other.id), "reason": "搬家", "was": str(top.user_id)},
               htmx=True)
    assert res.status_code == 200 and referrer_of(buyer.id) == other.user_id
    [row] = audits("customer.move")
    assert row.target_id == str(buyer.id) and row.after["distributor_id"] == other.id
    db.session.rollback()
    assert orders.sale_place(orders.Buyer(user=db.session.get(User, buyer.id))).distributor.id == other.id
    # The page was drawn before the move: refused, not made on what nobody saw.
    res = post(b, url(base, top.id, "customers/move"),
               {"user_id": str(buyer.id), "target": "0", "reason": "搬家", "was": str(top.user_id)}, htmx=True)
    assert res.status_code == 409 and "刷新" in res.text and referrer_of(buyer.id) == other.user_id
    # A distributor is not moved as a customer; a frozen target takes nobody.
    res = post(b, url(base, top.id, "customers/move"), {"user_id": str(second.user_id), "target": "0",
                                                        "reason": "x"}, htmx=True)
    assert res.status_code == 409 and "已是分销商" in res.text
    post(b, url(base, other.id, "freeze"), {"reason": "核查"}, htmx=True)
    lone = customer_of(top)
    res = post(b, url(base, top.id, "customers/move"), {"user_id": str(lone.id), "target": str(other.id),
                                                        "reason": "x"}, htmx=True)
    assert res.status_code == 409 and "冻结" in res.text and referrer_of(lone.id) == top.user_id


def test_an_organic_customer_can_be_given_a_referrer(team, base, staff_browser):
    top, *_ = team
    walk_in = make_user("路人")
    res = post(staff_browser("owner"), url(base, top.id, "customers/move"),
               {"user_id": str(walk_in.id), "target": top.unit.invite_code, "reason": "线下介绍"}, htmx=True)
    assert res.status_code == 200 and referrer_of(walk_in.id) == top.user_id
    assert referrals.owner_of(db.session.get(User, walk_in.id)).id == top.id


# -- at once (PostgreSQL) ----------------------------------------------------------------------------

def _at_once(calls) -> list[int]:
    barrier, codes = threading.Barrier(len(calls)), []

    def run(call):
        barrier.wait(timeout=30)
        codes.append(call())

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return sorted(codes)


def _posts(pairs) -> list:
    """Calls posting each (browser, url, data) as htmx; everything read before the threads start
    (an ORM attribute read in a thread would need the app context)."""
    return [lambda b=b, u=u, data=data: post(b, u, data, htmx=True).status_code for b, u, data in pairs]


@needs_postgres
def test_two_staff_freezing_at_once_freeze_once(rich, base, staff_browser):
    d = rich()
    browsers = [staff_browser("owner"), staff_browser("operator")]
    target = url(base, d.id, "freeze")
    codes = _at_once(_posts([(b, target, {"reason": f"by {b.staff_name}"}) for b in browsers]))
    assert codes == [200, 409], codes
    assert again(d).status == "frozen" and len(audits("distributor.freeze")) == 1
    assert len(notices(d, "distributor_frozen")) == 1


@needs_postgres
def test_a_freeze_and_a_withdrawal_at_once_never_both_pass_unseen(app, rich, base, staff_browser):
    d = rich()
    d_id, target = d.id, url(base, d.id, "freeze")
    [freeze] = _posts([(staff_browser("owner"), target, {"reason": "核查"})])
    outcome = []

    def withdraw():
        with app.app_context():
            try:
                withdrawals.request_withdrawal(db.session.get(Distributor, d_id), 1000,
                                               withdrawals.new_request_key())
                outbox.commit()
                outcome.append("requested")
            except Conflict:
                outbox.rollback()
                outcome.append("refused")
        return 0

    _at_once([freeze, withdraw])
    assert again(d).status == "frozen"
    # The request came first (it waits for the merchant, who may reject it) or was refused: never
    # reserved after the freeze was decided.
    assert (outcome[0], balance(d)[1]) in (("requested", 1000), ("refused", 0))


@needs_postgres
def test_two_moves_at_once_never_make_a_cycle(app, base, staff_browser):
    one, two = make_distributor("甲"), make_distributor("乙")
    browsers = [staff_browser("owner"), staff_browser("operator")]
    codes = _at_once(_posts([(browsers[0], url(base, one.id, "move"), {"target": str(two.id), "reason": "x"}),
                             (browsers[1], url(base, two.id, "move"), {"target": str(one.id), "reason": "x"})]))
    assert codes == [200, 409], codes
    levels = sorted((again(one).level, again(two).level))
    assert levels == [1, 2] and len(audits("distributor.move")) == 1


@needs_postgres
def test_two_staff_moving_the_same_distributor_at_once(team, base, staff_browser):
    top, second, other, _ = team
    third = make_distributor("丙")
    browsers = [staff_browser("owner"), staff_browser("operator")]
    target, was = url(base, second.id, "move"), str(top.user_id)
    codes = _at_once(_posts([(b, target, {"target": str(t.id), "reason": "x", "was": was})
                             for b, t in zip(browsers, (other, third))]))
    assert codes == [200, 409], codes
    assert again(second).parent_id in (other.id, third.id) and len(audits("distributor.move")) == 1


# -- in a real browser -------------------------------------------------------------------------------

def test_the_pages_in_a_browser_at_1280_and_375(team, settings, make_staff, tmp_path):  # noqa: F811
    """The list and a level-1's page fit a laptop and a phone: nothing scrolls sideways but the tables
    inside their cards; a freeze from the page shows on it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from admin_helpers import PASSWORD
    from test_browser_buy import chromium, shoot

    top, *_ = team
    base, folder = settings["app"]["base_url"], Path(os.environ.get("FENXIAO_SHOTS", tmp_path))
    make_staff("yunying", "operator")
    for width, phone in ((1280, False), (375, True)):
        driver = chromium(width, 900, phone=phone)
        try:
            driver.get(f"{base}/admin/login")
            driver.find_element(By.NAME, "name").send_keys("yunying")
            driver.find_element(By.NAME, "password").send_keys(PASSWORD)
            driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            WebDriverWait(driver, 15).until(ready.title_contains("概览"))
            for path, name in (("/admin/distributors", "list"), (f"/admin/distributors/{top.id}", "detail")):
                driver.get(base + path)
                assert driver.execute_script("return document.documentElement.scrollWidth") <= width, path
                shoot(driver, f"distributors-{name}-{width}", width, mobile=phone, folder=folder)
            if not phone:
                form = driver.find_element(By.CSS_SELECTOR, "#ds-actions form")
                form.find_element(By.NAME, "reason").send_keys("核查推广内容")
                driver.execute_script("window.confirm = () => true")
                form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
                WebDriverWait(driver, 15).until(ready.presence_of_element_located((By.ID, "ds-frozen")))
                assert "核查推广内容" in driver.find_element(By.ID, "ds-frozen").text
                shoot(driver, "distributors-frozen-1280", width, mobile=False, folder=folder)
        finally:
            driver.quit()
    assert again(top).status == "frozen"
