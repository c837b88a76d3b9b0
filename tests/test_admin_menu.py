"""The account's menu page (/admin/menu), over real HTTP as staff: the
grid form checked against WeChat's limits (each kind refused with its own
words), the phone preview, saving versions, pushing to the sandbox platform
(whose simulator then shows the menu), a push WeChat refuses, audit rows,
roles, and two pushes at once."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser  # noqa: F401
from app.config import build
from conftest import needs_postgres
from models import AuditEntry, MenuVersion, SandboxMenu, db
from test_simulator import Phone, menu_buttons, phone, phones  # noqa: F401
from wxbot.client import wechat_client
from wxbot.menu import load_menu

MENU = "/admin/menu"


def grid(*tops) -> dict[str, str]:
    """The editor's form fields for top buttons given as (name, type, value)
    or (name, [(name, type, value), …]) for a group."""
    form: dict[str, str] = {}
    for t, top in enumerate(tops):
        name, rest = top[0], top[1:]
        form[f"t{t}-name"] = name
        if rest and isinstance(rest[0], list):
            for s, (sub_name, kind, value) in enumerate(rest[0]):
                form.update({f"t{t}-s{s}-name": sub_name, f"t{t}-s{s}-type": kind, f"t{t}-s{s}-value": value})
        else:
            form.update({f"t{t}-type": rest[0], f"t{t}-value": rest[1]})
    return form


SIMPLE = grid(("帮助", "click", "HELP"),
              ("分销", [("我的二维码", "click", "MY_QRCODE"), ("商城首页", "view", "https://shop.example.com/h5/")]))
SIMPLE_MENU = {"button": [{"type": "click", "name": "帮助", "key": "HELP"},
                          {"name": "分销", "sub_button": [
                              {"type": "click", "name": "我的二维码", "key": "MY_QRCODE"},
                              {"type": "view", "name": "商城首页", "url": "https://shop.example.com/h5/"}]}]}


def versions() -> list[MenuVersion]:
    db.session.rollback()  # see what the server committed
    return list(db.session.scalars(select(MenuVersion).order_by(MenuVersion.id)))


def audit_rows(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def at_wechat() -> dict | None:
    """The menu the sandbox platform holds (wechatpy answers None for 46003, no menu)."""
    got = wechat_client().menu.get()
    return got["menu"] if got else None


def platform_menus() -> list[dict]:
    """What the sandbox platform holds, read from its table (whichever account's)."""
    db.session.rollback()
    return [m.definition for m in db.session.scalars(select(SandboxMenu))]


def test_the_editor_opens_with_the_default_menu_and_its_preview(app, base, staff_browser):
    page = staff_browser("owner").get(f"{base}{MENU}")
    assert page.status_code == 200
    assert 'name="t1-s0-name" value="我的二维码"' in page.text and 'value="MY_QRCODE"' in page.text
    assert 'id="menu-phone"' in page.text and "符合微信的菜单限制" in page.text
    assert "默认菜单" in page.text and "发布到公众号" in page.text


def test_preview_shows_the_bar_and_what_to_fix_and_saves_nothing(app, base, staff_browser):
    b = staff_browser("operator")
    res = post(b, f"{base}/admin/menu/preview", SIMPLE, htmx=True)
    assert res.status_code == 200
    assert "<li>我的二维码</li>" in res.text and "<span>帮助</span>" in res.text and "可以发布" in res.text
    bad = post(b, f"{base}/admin/menu/preview", grid(("一个很长的菜单", "click", "HELP")), htmx=True)
    assert bad.status_code == 200 and "发布前需要修改" in bad.text and "一个很长的菜单" in bad.text
    assert versions() == [] and audit_rows("menu.") == []


def test_save_push_and_the_simulator_shows_the_pushed_menu(app, base, staff_browser, phone):
    b = staff_browser("operator")
    saved = post(b, f"{base}/admin/menu/save", SIMPLE)
    assert saved.status_code == 302
    [draft] = versions()
    assert draft.definition == SIMPLE_MENU and draft.saved_by == b.staff_name and not draft.is_pushed
    assert at_wechat() is None  # a draft is not published
    page = b.get(f"{base}{MENU}")
    assert "已保存为草稿" in page.text and f'id="menu-version-{draft.id}"' in page.text and "草稿" in page.text

    pushed = post(b, f"{base}/admin/menu/push", SIMPLE, htmx=True)
    assert pushed.status_code == 200 and "已发布到公众号" in pushed.text and "公众号正在使用" in pushed.text
    [version] = versions()  # the same menu: the draft itself is pushed
    assert (version.id, version.push_no, version.pushed_by) == (draft.id, 1, b.staff_name)
    assert at_wechat() == SIMPLE_MENU

    phone.new_user("小菜")
    phone.do("follow")
    shown = phone.page()
    assert "菜单尚未发布" not in shown
    assert menu_buttons(shown) == [("HELP", "帮助"), ("MY_QRCODE", "我的二维码")]
    assert "https://shop.example.com/h5/" in shown and "商城首页" in shown

    [save_row] = audit_rows("menu.save")
    [push_row] = audit_rows("menu.push")
    assert save_row.actor == push_row.actor == b.staff_name and push_row.target_id == str(draft.id)
    assert push_row.before == {"live_version": None} and push_row.after["definition"] == SIMPLE_MENU


def test_saving_the_same_menu_twice_is_one_version_and_old_versions_reopen(app, base, staff_browser):
    b = staff_browser("owner")
    assert post(b, f"{base}/admin/menu/save", SIMPLE).status_code == 302
    again = post(b, f"{base}/admin/menu/save", SIMPLE, htmx=True)
    assert again.status_code == 200 and "没有新建版本" in again.text
    changed = dict(SIMPLE, **{"t0-name": "客服"})
    assert post(b, f"{base}/admin/menu/save", changed).status_code == 302
    first, second = versions()
    assert second.definition["button"][0]["name"] == "客服" and len(audit_rows("menu.save")) == 2
    assert 'value="客服"' in b.get(f"{base}{MENU}").text  # the newest opens
    old = b.get(f"{base}{MENU}", params={"version": first.id})
    assert old.status_code == 200 and 'name="t0-name" value="帮助"' in old.text
    assert b.get(f"{base}{MENU}", params={"version": "abc"}).status_code == 200


LONG_URL = "https://shop.example.com/" + "a" * 1000


@pytest.mark.parametrize("form, words", [
    (grid(*[(f"菜单{i}", "click", "HELP") for i in range(3)]), None),  # three is fine: the control case
    ({}, "需要 1-3 个一级菜单，现有 0 个"),
    (grid(("商城首页入口", "click", "SHOP")), "一级菜单名「商城首页入口」太长：应为 1-4 个字"),
    (grid(("分销", [("这个子菜单名字太长了", "click", "HELP")])), "子菜单名「这个子菜单名字太长了」太长：应为 1-8 个字"),
    (grid(("Shopping", "click", "SHOP")), None),  # 8 letters take the room of 4 characters
    (grid(("Shopping!", "click", "SHOP")), "一级菜单名「Shopping!」太长"),
    (grid(("", "click", "HELP")), "有一级菜单没有填名称"),
    (grid(("分销", [("", "click", "HELP")])), "有子菜单没有填名称"),
    (grid(("帮助", "click", "NO_SUCH_COMMAND")), "命令 NO_SUCH_COMMAND 不存在"),
    (grid(("帮助", "click", "K" * 129)), "命令太长（最多 128 字节）"),
    (grid(("商城", "view", "shop.example.com/h5")), "链接应以 http:// 或 https:// 开头"),
    (grid(("商城", "view", "javascript:alert(1)")), "链接应以 http:// 或 https:// 开头"),
    (grid(("商城", "view", LONG_URL)), "链接太长（最多 1024 字节）"),
    (grid(("扫码", "scancode_push", "SCAN")), "类型 scancode_push 不受支持"),
    ({"t0-name": "帮助", "t0-value": "HELP"}, "类型 （未选） 不受支持"),
])
def test_each_limit_is_refused_with_its_own_words(app, base, staff_browser, form, words):
    b = staff_browser("owner")
    for action in ("save", "push"):
        res = post(b, f"{base}/admin/menu/{action}", form, htmx=True)
        if words is None:
            assert res.status_code == 200, res.text
            continue
        assert res.status_code == 400 and words in res.text and "没有保存" in res.text, res.text
    if words is not None:
        assert versions() == [] and audit_rows("menu.") == [] and at_wechat() is None


def test_too_many_buttons_are_refused(app, base, staff_browser):
    from handlers import menu as rules

    four = {"button": [{"type": "click", "name": f"菜单{i}", "key": "HELP"} for i in range(4)]}
    six = {"button": [{"name": "更多", "sub_button": [{"type": "click", "name": f"帮助{i}", "key": "HELP"}
                                                     for i in range(6)]}]}
    assert "需要 1-3 个一级菜单，现有 4 个" in rules.problems(four)
    assert "一级菜单「更多」需要 1-5 个子菜单，现有 6 个" in rules.problems(six)
    # The form has room for no more: fields past the grid are not read.
    b = staff_browser("owner")
    form = dict(grid(*[(f"菜单{i}", "click", "HELP") for i in range(3)]), **{"t3-name": "第四", "t3-type": "click",
                                                                           "t3-value": "HELP", "t0-s5-name": "六"})
    assert post(b, f"{base}/admin/menu/save", form).status_code == 302
    [v] = versions()
    assert [button["name"] for button in v.definition["button"]] == ["菜单0", "菜单1", "菜单2"]


@pytest.fixture
def refusing_wechat(app, settings):
    """The product talks to a WeChat platform (a second sandbox, on its own
    port, same database) that holds another AppSecret for our AppID: it
    refuses our token request with 40125 and so every call."""
    from werkzeug.serving import make_server

    from app import create_app
    from app.extensions import redis_store
    from conftest import free_port

    raw = {section: dict(values) for section, values in settings.items()}
    raw["wechat"]["secret"] = "another-platforms-secret"
    other = create_app(build(raw, {}, "tests"))
    port = free_port()
    server = make_server("127.0.0.1", port, other, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    ours = {section: dict(values) for section, values in settings.items()}
    ours["wechat"]["api_base"] = f"http://127.0.0.1:{port}/sandbox/api"
    app.config["SETTINGS"] = build(ours, {}, "tests")
    redis_store.conn.delete(f"wechat:{settings['wechat']['appid']}_access_token")  # ask the new platform
    yield
    app.config["SETTINGS"] = settings
    server.shutdown()
    server.server_close()
    with other.app_context():
        db.session.remove()
        db.engine.dispose()
        redis_store.conn.close()


def test_a_push_wechat_refuses_is_shown_and_nothing_is_marked_pushed(app, base, staff_browser, request):
    b = staff_browser("owner")
    assert post(b, f"{base}/admin/menu/push", SIMPLE).status_code == 302
    [live] = versions()
    request.getfixturevalue("refusing_wechat")
    other = dict(SIMPLE, **{"t0-name": "客服"})
    res = post(b, f"{base}/admin/menu/push", other, htmx=True)
    assert res.status_code == 409 and "微信拒绝了这份菜单" in res.text and "40125" in res.text
    plain = post(b, f"{base}/admin/menu/push", other)
    assert plain.status_code == 409 and "菜单没有发布" in plain.text
    assert [(v.id, v.push_no) for v in versions()] == [(live.id, 1)]  # no new version, nothing marked
    assert platform_menus() == [SIMPLE_MENU]  # followers still see the menu pushed before
    assert len(audit_rows("menu.push")) == 1 and len(audit_rows("menu.save")) == 1


def test_a_first_push_refused_leaves_no_version_and_no_menu(app, base, staff_browser, refusing_wechat):
    b = staff_browser("owner")
    res = post(b, f"{base}/admin/menu/push", SIMPLE, htmx=True)
    assert res.status_code == 409 and "微信拒绝了这份菜单" in res.text
    assert versions() == [] and audit_rows("menu.") == [] and platform_menus() == []


def test_an_unreachable_wechat_is_said_and_changes_nothing(app, base, staff_browser, settings):
    from app.extensions import redis_store
    from conftest import free_port

    b = staff_browser("owner")
    raw = {section: dict(values) for section, values in settings.items()}
    raw["wechat"]["api_base"] = f"http://127.0.0.1:{free_port()}/sandbox/api"  # nothing listens there
    app.config["SETTINGS"] = build(raw, {}, "tests")
    redis_store.conn.delete(f"wechat:{settings['wechat']['appid']}_access_token")
    try:
        res = post(b, f"{base}/admin/menu/push", SIMPLE, htmx=True)
    finally:
        app.config["SETTINGS"] = settings
    assert res.status_code == 409 and "连不上微信服务器" in res.text and "菜单没有发布" in res.text
    assert versions() == [] and audit_rows("menu.") == [] and platform_menus() == []


def test_roles(app, base, staff_browser):
    for role in ("finance", "shipping"):
        b = staff_browser(role)
        assert b.get(f"{base}{MENU}").status_code == 403
        for action in ("preview", "save", "push"):
            assert post(b, f"{base}/admin/menu/{action}", SIMPLE).status_code == 403
    assert versions() == [] and at_wechat() is None
    operator = staff_browser("operator")
    assert "公众号菜单" in operator.get(f"{base}/admin/").text
    assert post(operator, f"{base}/admin/menu/push", SIMPLE).status_code == 302


def test_the_cli_pushes_menu_json_as_a_version(app):
    result = app.test_cli_runner().invoke(args=["menu", "push"])
    assert result.exit_code == 0, result.output
    [v] = versions()
    assert v.definition == load_menu() and v.push_no == 1 and v.pushed_by.startswith("cli:")
    assert [r.actor for r in audit_rows("menu.push")] == [v.pushed_by]
    assert app.test_cli_runner().invoke(args=["menu", "push"]).exit_code == 0
    [v] = versions()  # the same menu again: the same version, pushed again
    assert v.push_no == 2 and at_wechat() == load_menu()


@needs_postgres
def test_two_pushes_at_once_one_version_wins_everywhere(app, base, staff_browser):
    people = [staff_browser("owner"), staff_browser("operator")]
    menus = [dict(SIMPLE, **{"t0-name": "客服"}), dict(SIMPLE, **{"t0-name": "售后"})]
    for round_ in range(5):
        gate = threading.Barrier(2)
        answers: list[int] = []

        def push(i: int) -> None:
            gate.wait()
            answers.append(post(people[i], f"{base}/admin/menu/push", menus[i], htmx=True).status_code)

        threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [200, 200]
        pushed = [v for v in versions() if v.is_pushed]
        live = max(pushed, key=lambda v: v.push_no)
        assert live.push_no == 2 * (round_ + 1)  # one number per push (a version pushed again takes a new one)
        assert at_wechat() == live.definition  # WeChat shows what the database says was pushed last
        assert len(audit_rows("menu.push")) == 2 * (round_ + 1)


@needs_postgres
def test_a_save_sent_twice_at_once_is_one_version(app, base, staff_browser):
    b = staff_browser("owner")
    gate = threading.Barrier(4)
    answers: list[int] = []

    def save() -> None:
        gate.wait()
        answers.append(post(b, f"{base}/admin/menu/save", SIMPLE, htmx=True).status_code)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * 4
    assert len(versions()) == 1 and len(audit_rows("menu.save")) == 1
