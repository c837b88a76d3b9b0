"""The 员工 page: an owner lists, creates, disables, enables and changes the
role of staff; every change is in the audit log; others get 403."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from admin_helpers import PASSWORD, log_in, make_staff, post, staff_browser, token  # noqa: F401
from conftest import needs_postgres
from models import AuditEntry, Staff, db


def _staff(name: str) -> Staff:
    db.session.rollback()
    return db.session.scalars(select(Staff).where(Staff.name == name)).one()


def _audit(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def test_owner_sees_every_account_with_role_2fa_state_and_last_login(app, base, staff_browser, make_staff):
    boss = staff_browser("owner", "boss")
    make_staff("newbie", "shipping")
    page = boss.get(f"{base}/admin/staff")
    assert page.status_code == 200
    assert "boss" in page.text and "newbie" in page.text and "发货" in page.text
    assert "从未登录" in page.text  # newbie has not logged in; boss has
    assert "未开启" in page.text and "正常" in page.text
    assert 'action="/admin/staff/' in page.text  # disable / role forms for the others


def test_create_staff_from_the_page_then_they_log_in(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    res = post(boss, f"{base}/admin/staff", {"name": "Amy.li", "role": "finance", "password": "a long secret 1"})
    assert res.status_code == 302 and res.headers["Location"].endswith("/admin/staff")
    page = boss.get(f"{base}/admin/staff").text
    assert "已创建员工 amy.li（财务）" in page
    assert _staff("amy.li").role == "finance"
    [entry] = _audit("staff.create")[-1:]
    assert entry.actor == "boss" and entry.after == {"name": "amy.li", "role": "finance"}
    assert log_in(requests.Session(), base, "amy.li", "a long secret 1").status_code == 302


def test_create_refuses_bad_input_with_a_message_and_changes_nothing(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    cases = [
        ({"name": "x", "role": "owner", "password": PASSWORD}, "用户名为 3-32 位"),
        ({"name": "carol", "role": "king", "password": PASSWORD}, "角色只能是"),
        ({"name": "carol", "role": "owner", "password": "short"}, "密码至少 10 个字符"),
        ({"name": "carol", "role": "owner", "password": ""}, "请输入初始密码"),
        ({"name": "boss", "role": "owner", "password": PASSWORD}, "用户名 boss 已被使用"),
    ]
    for data, message in cases:
        res = post(boss, f"{base}/admin/staff", data)
        assert 400 <= res.status_code < 500 and message in res.text, (data, res.status_code, res.text[:300])
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Staff)) == 1
    assert _audit("staff.create") == [] or all(e.actor == "system" for e in _audit("staff.create"))


def test_disable_ends_their_logins_enable_lets_them_back(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    worker = staff_browser("operator", "worker")
    member = _staff("worker")
    assert worker.get(f"{base}/admin/", allow_redirects=False).status_code == 200
    res = post(boss, f"{base}/admin/staff/{member.id}/disable", {"reason": ""})
    assert res.status_code == 400 and "请写明停用原因" in res.text
    res = post(boss, f"{base}/admin/staff/{member.id}/disable", {"reason": "离职"})
    assert res.status_code == 302
    assert worker.get(f"{base}/admin/", allow_redirects=False).status_code == 302  # logged out at once
    assert log_in(requests.Session(), base, "worker").status_code == 401
    [entry] = _audit("staff.disable")
    assert entry.reason == "离职" and entry.actor == "boss" and entry.target_id == str(member.id)
    # a second click: no second row, a clear message
    assert post(boss, f"{base}/admin/staff/{member.id}/disable", {"reason": "离职"}).status_code == 302
    assert len(_audit("staff.disable")) == 1
    assert "已停用" in boss.get(f"{base}/admin/staff").text
    assert post(boss, f"{base}/admin/staff/{member.id}/enable").status_code == 302
    assert _staff("worker").is_active and len(_audit("staff.enable")) == 1
    assert log_in(requests.Session(), base, "worker").status_code == 302


def test_cannot_disable_or_demote_yourself(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    me = _staff("boss")
    res = post(boss, f"{base}/admin/staff/{me.id}/disable", {"reason": "试试"})
    assert res.status_code == 409 and "不能停用自己的账号" in res.text
    res = post(boss, f"{base}/admin/staff/{me.id}/role", {"role": "shipping"})
    assert res.status_code == 409 and "不能修改自己的角色" in res.text
    assert _staff("boss").is_active and _staff("boss").role == "owner"
    assert boss.get(f"{base}/admin/staff").status_code == 200


def test_role_change_is_audited_and_ends_their_logins(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    worker = staff_browser("operator", "worker")
    member = _staff("worker")
    res = post(boss, f"{base}/admin/staff/{member.id}/role", {"role": "nobody"})
    assert res.status_code == 400 and "角色只能是" in res.text
    res = post(boss, f"{base}/admin/staff/{member.id}/role", {"role": "shipping", "reason": "调岗"})
    assert res.status_code == 302
    assert _staff("worker").role == "shipping"
    [entry] = _audit("staff.role")
    assert (entry.before, entry.after, entry.reason) == ({"role": "operator"}, {"role": "shipping"}, "调岗")
    assert worker.get(f"{base}/admin/", allow_redirects=False).status_code == 302
    again = requests.Session()
    assert log_in(again, base, "worker").status_code == 302
    assert again.get(f"{base}/admin/staff").status_code == 403


def test_unknown_staff_id_is_a_404_not_a_500(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    for verb in ("disable", "enable", "role"):
        res = post(boss, f"{base}/admin/staff/999999/{verb}", {"reason": "x", "role": "owner"})
        assert res.status_code == 404 and "员工不存在" in res.text, verb


def test_only_owners_manage_staff(app, base, staff_browser):
    for role in ("operator", "finance", "shipping"):
        b = staff_browser(role)
        assert b.get(f"{base}/admin/staff").status_code == 403
        res = post(b, f"{base}/admin/staff", {"name": "sneaky", "role": "owner", "password": PASSWORD})
        assert res.status_code == 403
    db.session.rollback()
    assert db.session.scalars(select(Staff).where(Staff.name == "sneaky")).first() is None


def test_htmx_disable_answers_a_message_fragment(app, base, staff_browser):
    boss = staff_browser("owner", "boss")
    staff_browser("shipping", "packer")
    member = _staff("packer")
    res = post(boss, f"{base}/admin/staff/{member.id}/disable", {"reason": "休假"}, htmx=True)
    assert res.status_code == 200 and "已停用 packer" in res.text and "<html" not in res.text


# -- at the same time (PostgreSQL: row locks) ---------------------------------------------

@needs_postgres
def test_two_owners_disabling_one_account_at_once_write_one_row(app, base, staff_browser):
    owners = [staff_browser("owner", f"boss{i}") for i in range(2)]
    staff_browser("operator", "worker")
    member = _staff("worker")
    tokens = [token(b.get(f"{base}/admin/staff").text) for b in owners]
    url = f"{base}/admin/staff/{member.id}/disable"
    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(lambda i: owners[i].post(url, data={"csrf_token": tokens[i], "reason": f"第{i}次"},
                                                        allow_redirects=False).status_code, range(2)))
    assert codes == [302, 302]
    assert len(_audit("staff.disable")) == 1 and not _staff("worker").is_active


@needs_postgres
def test_two_owners_creating_one_name_at_once_make_one_account(app, base, staff_browser):
    owners = [staff_browser("owner", f"boss{i}") for i in range(2)]
    tokens = [token(b.get(f"{base}/admin/staff").text) for b in owners]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda i: owners[i].post(
            f"{base}/admin/staff", data={"csrf_token": tokens[i], "name": "twin", "role": ["finance", "shipping"][i],
                                         "password": PASSWORD}, allow_redirects=False), range(2)))
    codes = sorted(r.status_code for r in results)
    assert codes == [302, 409], codes
    assert "用户名 twin 已被使用" in next(r.text for r in results if r.status_code == 409)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Staff).where(Staff.name == "twin")) == 1
    assert [e.after["name"] for e in _audit("staff.create")].count("twin") == 1


def test_an_older_heavier_password_hash_still_signs_in_and_is_made_light(app, base, make_staff):
    from argon2 import PasswordHasher

    member = make_staff("old.account", "owner")
    member.password_hash = PasswordHasher().hash(PASSWORD)  # the library's default: 64 MiB a check
    db.session.commit()
    browser = requests.Session()
    assert log_in(browser, base, "old.account").status_code == 302
    db.session.expire_all()
    now_hash = db.session.get(Staff, member.id).password_hash
    assert now_hash.startswith("$argon2id$") and "$m=7168,t=5,p=1$" in now_hash
    assert log_in(requests.Session(), base, "old.account", "wrong password").status_code != 302
