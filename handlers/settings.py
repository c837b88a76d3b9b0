"""The validated configuration, for the rules the merchant sets there.

``[distribution]`` and ``[orders]`` come with the rule versions in effect
now overlaid (handlers/rules.py: set on the 规则设置 page, the TOML file
giving only the first values); every other section is the file's."""
from __future__ import annotations

from typing import Any, Mapping

from . import rules


def section(name: str) -> Mapping[str, Any]:
    return rules.section(name)


def base_url() -> str:
    return section("app")["base_url"]


def page_url(path: str) -> str:
    """The address of an H5 page, as links in messages need it."""
    return f"{base_url()}/h5/{path.lstrip('/')}"


def link(path: str, text: str) -> str:
    """A link inside a WeChat text message (WeChat renders <a href>)."""
    return f'<a href="{page_url(path)}">{text}</a>'
