"""The validated configuration, for the rules the merchant sets there."""
from __future__ import annotations

from typing import Any, Mapping

from flask import current_app


def section(name: str) -> Mapping[str, Any]:
    return current_app.config["SETTINGS"][name]


def base_url() -> str:
    return section("app")["base_url"]


def page_url(path: str) -> str:
    """The address of an H5 page, as links in messages need it."""
    return f"{base_url()}/h5/{path.lstrip('/')}"


def link(path: str, text: str) -> str:
    """A link inside a WeChat text message (WeChat renders <a href>)."""
    return f'<a href="{page_url(path)}">{text}</a>'
