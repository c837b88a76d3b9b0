"""The official account's menu: edited on a page, checked against WeChat's limits, previewed
and pushed.

The form is a fixed grid of 3 × (1 + 5) rows; every rule is in handlers.menu.
Saving and pushing answer the page's body (htmx) or go back to the page (a
plain form); a refused menu or a push WeChat refused lands in the message
bar and the form keeps what was typed."""
from __future__ import annotations

from flask import render_template, request, url_for

from handlers import menu as rules

from . import bp
from .auth import actor, is_htmx, requires
from .support import done, run

BODY = "admin/menu_body.html"


def _version_arg() -> int | None:
    value = request.args.get("version", "")
    return int(value) if value.isascii() and value.isdigit() and 0 < int(value) < 2**31 else None


def _context(definition: dict, opened=None, **extra) -> dict:
    from wxbot.menu import TYPES

    return dict(grid=rules.to_grid(definition), preview=definition, found=rules.problems(definition),
                opened=opened, live=rules.live(), versions=rules.history(), types=TYPES,
                keys=sorted(rules.known_keys()), **extra)


@bp.get("/menu")
@requires("menu.view")
def menu_editor():
    definition, opened = rules.editing(_version_arg())
    return render_template("admin/menu_editor.html", **_context(definition, opened))


@bp.post("/menu/preview")
@requires("menu.view")
def menu_editor_preview():
    definition = rules.from_form(request.form)
    return render_template("admin/menu_preview.html", preview=definition, found=rules.problems(definition))


def _answer(message: str, shown):
    back = url_for("admin.menu_editor", version=shown.id)
    if is_htmx():
        return done(message, back, BODY, **_context(shown.definition, shown))
    return done(message, back)


@bp.post("/menu/save")
@requires("menu.edit")
def menu_editor_save():
    saved, new = run(rules.save, rules.from_form(request.form), actor=actor())
    return _answer(f"已保存为草稿（版本 #{saved.id}），尚未发布到公众号" if new
                   else f"菜单和版本 #{saved.id} 相同，没有新建版本", saved)


@bp.post("/menu/push")
@requires("menu.edit")
def menu_editor_push():
    pushed = run(rules.push, rules.from_form(request.form), actor=actor())
    return _answer(f"已发布到公众号（版本 #{pushed.id}），关注者重新进入公众号后可看到新菜单", pushed)
