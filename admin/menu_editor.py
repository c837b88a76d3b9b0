"""The official account's menu: edited on a page, checked against WeChat's limits, previewed
and pushed."""
from __future__ import annotations

from . import bp  # noqa: F401
