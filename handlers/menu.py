"""The account's custom menu (issue 12): edited by staff on the admin's
公众号菜单 page, checked against WeChat's limits (wxbot.menu.problems), kept
as versions and pushed to WeChat with menu/create.

Every save that changes the menu is a new version (who, when). A push sends
one definition to WeChat and, only once WeChat has taken it, marks its
version pushed with the next push number: the version with the highest
number is the menu WeChat shows. A refused push changes nothing.

Saves and pushes run one at a time: on PostgreSQL an advisory lock held
until the transaction ends covers the call to WeChat and the commit, so when
two staff push at once the push WeChat received last is also the one
numbered last, and a double-clicked save finds the version the first made.
The call is made inside the transaction, not after it (unlike our other
outside effects), because whether WeChat took the menu is what gets
recorded. SQLite (the try-out) takes no lock; its writes are serialised and
nothing is written before the call, so the sandbox platform, in the same
database, can record the menu meanwhile.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

import requests
from sqlalchemy import func, select, text
from wechatpy.exceptions import WeChatClientException

from models import MenuVersion, db

from . import audit
from .audit import Actor
from .clock import now
from .errors import DomainError

TOPS, SUBS = 3, 5  # the editor's grid: WeChat's maximums
MENU_LOCK = 0x4D454E55  # "MENU": the advisory lock's key
HISTORY = 20


class PushFailed(DomainError):
    """WeChat refused the menu or could not be reached; nothing was marked pushed.
    The merchant's request was fine and our server too: a refusal to show, not a 5xx."""

    status = 409

    def __init__(self, message: str, errcode: int | None = None, errmsg: str = "") -> None:
        super().__init__(message)
        self.errcode, self.errmsg = errcode, errmsg


def known_keys() -> set[str]:
    from wxbot.commands import COMMANDS

    return set(COMMANDS)


def problems(definition: Mapping[str, Any]) -> list[str]:
    from wxbot.menu import problems as wechat_problems

    return wechat_problems(dict(definition), known_keys())


def _checked(definition: Mapping[str, Any]) -> dict[str, Any]:
    found = problems(definition)
    if found:
        raise DomainError("菜单有误，没有保存：" + "；".join(found))
    return {"button": definition["button"]}


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True, ensure_ascii=False) == json.dumps(b, sort_keys=True, ensure_ascii=False)


# -- the editor's form ----------------------------------------------------------

def from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The grid's fields (``t0-name``, ``t0-type``, ``t0-value``, ``t0-s1-name``…)
    as a menu/create body. Empty rows are left out; a top button with
    sub-buttons is a group, its own type and value unused."""
    def field(prefix: str, name: str) -> str:
        return str(form.get(f"{prefix}-{name}", "")).strip()

    def button(prefix: str) -> dict[str, Any] | None:
        name, kind, value = field(prefix, "name"), field(prefix, "type"), field(prefix, "value")
        if not name and not value:
            return None
        out: dict[str, Any] = {"type": kind, "name": name}
        out["url" if kind == "view" else "key"] = value
        return out

    buttons = []
    for t in range(TOPS):
        subs = [b for b in (button(f"t{t}-s{s}") for s in range(SUBS)) if b]
        if subs:
            buttons.append({"name": field(f"t{t}", "name"), "sub_button": subs})
        elif (top := button(f"t{t}")) is not None:
            buttons.append(top)
    return {"button": buttons}


@dataclass
class Row:
    name: str = ""
    type: str = "click"
    value: str = ""


@dataclass
class Group:
    top: Row
    subs: list[Row]


def to_grid(definition: Mapping[str, Any]) -> list[Group]:
    """A definition laid out on the editor's fixed grid of 3 × (1 + 5) rows."""
    def row(button: Mapping[str, Any]) -> Row:
        kind = str(button.get("type") or "click")
        return Row(str(button.get("name") or ""), kind, str(button.get("url" if kind == "view" else "key") or ""))

    grid = []
    buttons = [b for b in definition.get("button", []) if isinstance(b, dict)][:TOPS]
    for t in range(TOPS):
        top = buttons[t] if t < len(buttons) else {}
        subs = [row(s) for s in top.get("sub_button") or [] if isinstance(s, dict)][:SUBS]
        top_row = Row(str(top.get("name") or "")) if "sub_button" in top else row(top)
        grid.append(Group(top_row, subs + [Row() for _ in range(SUBS - len(subs))]))
    return grid


# -- versions -------------------------------------------------------------------

def latest() -> MenuVersion | None:
    return db.session.scalars(select(MenuVersion).order_by(MenuVersion.id.desc()).limit(1)).first()


def live() -> MenuVersion | None:
    """The version WeChat shows: the last one pushed."""
    return db.session.scalars(select(MenuVersion).where(MenuVersion.push_no.is_not(None))
                              .order_by(MenuVersion.push_no.desc()).limit(1)).first()


def history(limit: int = HISTORY) -> list[MenuVersion]:
    return list(db.session.scalars(select(MenuVersion).order_by(MenuVersion.id.desc()).limit(limit)))


def version(version_id: int) -> MenuVersion | None:
    return db.session.get(MenuVersion, version_id)


def editing(version_id: int | None = None) -> tuple[dict[str, Any], MenuVersion | None]:
    """What the editor opens with: the asked-for version, else the newest,
    else the default menu (wxbot/menu.json)."""
    from wxbot.menu import load_menu

    chosen = version(version_id) if version_id else None
    chosen = chosen or latest()
    return (chosen.definition if chosen else load_menu()), chosen


def save(definition: Mapping[str, Any], *, actor: Actor) -> tuple[MenuVersion, bool]:
    """Keep the edited menu as a new draft version; the same menu as the
    newest version is that version (a double click saves once). Returns the
    version and whether it is new."""
    body = _checked(definition)
    _one_change_at_a_time()
    newest = latest()
    if newest is not None and _same(newest.definition, body):
        return newest, False
    saved = MenuVersion(definition=body, saved_by=actor.name[:64], saved_at=now())
    db.session.add(saved)
    db.session.flush()
    audit.record(actor, "menu.save", "menu_version", saved.id, after={"definition": body})
    return saved, True


def _one_change_at_a_time() -> None:
    if db.session.get_bind().dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MENU_LOCK})


def _send(body: dict[str, Any]) -> None:
    from wxbot.client import wechat_client

    try:
        wechat_client().menu.create(body)
    except WeChatClientException as exc:
        if exc.errcode is None:  # wechatpy's wrapping of a failed HTTP exchange, not WeChat's answer
            failure = f"HTTP {exc.response.status_code}" if exc.response is not None else "没有应答"
            raise PushFailed(f"连不上微信服务器（{failure}），菜单没有发布，请稍后重试", errmsg=failure) from None
        raise PushFailed(f"微信拒绝了这份菜单（错误码 {exc.errcode}：{exc.errmsg}），菜单没有发布",
                         exc.errcode, str(exc.errmsg)) from None
    except requests.RequestException as exc:
        raise PushFailed(f"连不上微信服务器（{type(exc).__name__}），菜单没有发布，请稍后重试",
                         errmsg=type(exc).__name__) from None


def push(definition: Mapping[str, Any], *, actor: Actor) -> MenuVersion:
    """Publish the menu to WeChat and mark its version pushed (saving it as a
    version first when it is new). Raises PushFailed, with nothing changed,
    when WeChat does not take it."""
    body = _checked(definition)
    _one_change_at_a_time()
    _send(body)
    at, before = now(), live()
    newest = latest()
    pushed = newest if newest is not None and _same(newest.definition, body) else None
    if pushed is None:
        pushed = MenuVersion(definition=body, saved_by=actor.name[:64], saved_at=at)
        db.session.add(pushed)
        db.session.flush()
        audit.record(actor, "menu.save", "menu_version", pushed.id, after={"definition": body}, at=at)
    number = (db.session.scalar(select(func.max(MenuVersion.push_no))) or 0) + 1
    pushed.push_no, pushed.pushed_by, pushed.pushed_at = number, actor.name[:64], at
    db.session.flush()
    audit.record(actor, "menu.push", "menu_version", pushed.id, at=at,
                 before={"live_version": before.id if before else None},
                 after={"live_version": pushed.id, "push_no": number, "definition": body})
    return pushed
