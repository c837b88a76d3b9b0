"""The account's custom menu: the default in ``menu.json``, edited on the
admin's 公众号菜单 page (handlers.menu), checked here against WeChat's limits
and published with menu/create (the page, or ``flask --app wsgi menu push``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MENU_FILE = Path(__file__).with_name("menu.json")
MAX_TOP, MAX_SUB = 3, 5
# WeChat shows 4 Chinese characters on a top button and 8 on a sub-button (a
# Latin letter or digit takes half the room), and its API counts 16 / 60 bytes.
MAX_TOP_CHARS, MAX_SUB_CHARS = 4, 8
MAX_TOP_BYTES, MAX_SUB_BYTES = 16, 60
MAX_KEY_BYTES = 128
MAX_URL_BYTES = 1024
TYPES = {"click": "发送命令", "view": "打开网页"}


def load_menu(path: Path = MENU_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def width(name: str) -> float:
    """Room a name takes on the bar, in Chinese characters."""
    return sum(0.5 if ch.isascii() else 1 for ch in name)


def problems(menu: dict[str, Any], known_keys: set[str]) -> list[str]:
    """Everything WeChat would refuse, or that would lead nowhere, each said
    so a merchant knows which button to fix."""
    found: list[str] = []
    buttons = menu.get("button", []) if isinstance(menu, dict) else None
    if not isinstance(buttons, list):
        return ["菜单格式不对：应为 {\"button\": [...]}"]
    if not 1 <= len(buttons) <= MAX_TOP:
        found.append(f"需要 1-{MAX_TOP} 个一级菜单，现有 {len(buttons)} 个")

    def check_name(name: Any, chars: int, size: int, level: str) -> str:
        name = name if isinstance(name, str) else ""
        if not name.strip():
            found.append(f"有{level}没有填名称（应为 1-{chars} 个字）")
        elif width(name) > chars or len(name.encode()) > size:
            found.append(f"{level}名「{name}」太长：应为 1-{chars} 个字（英文字母、数字算半个字）")
        return name

    def check_action(button: dict[str, Any], name: str) -> None:
        kind = button.get("type")
        if kind == "click":
            key = button.get("key")
            if not isinstance(key, str) or not key:
                found.append(f"菜单「{name}」没有填命令")
            elif len(key.encode()) > MAX_KEY_BYTES:
                found.append(f"菜单「{name}」的命令太长（最多 {MAX_KEY_BYTES} 字节）")
            elif key not in known_keys:
                found.append(f"菜单「{name}」的命令 {key} 不存在，可用的命令：{'、'.join(sorted(known_keys))}")
        elif kind == "view":
            url = button.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) <= 8:
                found.append(f"菜单「{name}」的链接应以 http:// 或 https:// 开头")
            elif len(url.encode()) > MAX_URL_BYTES:
                found.append(f"菜单「{name}」的链接太长（最多 {MAX_URL_BYTES} 字节）")
            elif any(ch.isspace() for ch in url):
                found.append(f"菜单「{name}」的链接里不能有空格")
        else:
            shown = kind if isinstance(kind, str) and kind else "（未选）"
            found.append(f"菜单「{name}」的类型 {shown} 不受支持，可用：发送命令（click）、打开网页（view）")

    for top in buttons:
        if not isinstance(top, dict):
            found.append("菜单格式不对：每个菜单应为一个对象")
            continue
        subs = top.get("sub_button")
        if subs is None:
            check_action(top, check_name(top.get("name"), MAX_TOP_CHARS, MAX_TOP_BYTES, "一级菜单"))
            continue
        name = check_name(top.get("name"), MAX_TOP_CHARS, MAX_TOP_BYTES, "一级菜单")
        if not isinstance(subs, list) or not 1 <= len(subs) <= MAX_SUB:
            count = len(subs) if isinstance(subs, list) else 0
            found.append(f"一级菜单「{name}」需要 1-{MAX_SUB} 个子菜单，现有 {count} 个")
            subs = subs if isinstance(subs, list) else []
        for sub in subs:
            if not isinstance(sub, dict):
                found.append("菜单格式不对：每个菜单应为一个对象")
                continue
            check_action(sub, check_name(sub.get("name"), MAX_SUB_CHARS, MAX_SUB_BYTES, "子菜单"))
    return found
