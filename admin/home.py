"""The dashboard: what waits for the merchant's staff, and today's figures."""
from __future__ import annotations

from flask import render_template

from . import bp
from .auth import requires


@bp.get("/")
@requires("dashboard.view")
def index():
    return render_template("admin/index.html")
