"""Exports: every list as CSV (UTF-8 with a BOM, cells made inert), large ones as background
jobs with a download page; each export audited."""
from __future__ import annotations

from . import bp  # noqa: F401
