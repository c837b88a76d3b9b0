"""The account's custom menu: defined in ``menu.json``, checked against
WeChat's limits, published with ``flask --app wsgi menu push``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MENU_FILE = Path(__file__).with_name("menu.json")
MAX_TOP, MAX_SUB = 3, 5
MAX_TOP_CHARS, MAX_SUB_CHARS = 4, 8  # Chinese characters; WeChat counts 16 / 60 bytes
MAX_KEY_BYTES = 128


def load_menu(path: Path = MENU_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def problems(menu: dict[str, Any], known_keys: set[str]) -> list[str]:
    """Everything WeChat would refuse, or that would lead nowhere."""
    found: list[str] = []
    buttons = menu.get("button", [])
    if not 1 <= len(buttons) <= MAX_TOP:
        found.append(f"需要 1-{MAX_TOP} 个一级菜单，现有 {len(buttons)} 个")

    def check(button: dict[str, Any], limit: int) -> None:
        name = button.get("name", "")
        if not name or len(name) > limit:
            found.append(f"菜单名「{name}」应为 1-{limit} 个字")
        kind = button.get("type")
        if kind == "click":
            key = button.get("key", "")
            if key not in known_keys:
                found.append(f"菜单「{name}」的 key {key!r} 没有对应的命令")
            if len(key.encode()) > MAX_KEY_BYTES:
                found.append(f"菜单「{name}」的 key 太长")
        elif kind == "view":
            if not str(button.get("url", "")).startswith(("http://", "https://")):
                found.append(f"菜单「{name}」需要 http(s) 链接")
        else:
            found.append(f"菜单「{name}」的类型 {kind!r} 不受支持")

    for top in buttons:
        subs = top.get("sub_button")
        if subs is None:
            check(top, MAX_TOP_CHARS)
            continue
        if not top.get("name") or len(top["name"]) > MAX_TOP_CHARS:
            found.append(f"菜单名「{top.get('name', '')}」应为 1-{MAX_TOP_CHARS} 个字")
        if not 1 <= len(subs) <= MAX_SUB:
            found.append(f"「{top.get('name')}」需要 1-{MAX_SUB} 个子菜单")
        for sub in subs:
            check(sub, MAX_SUB_CHARS)
    return found
