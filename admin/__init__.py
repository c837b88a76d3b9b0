"""The management platform (/admin): the merchant's staff at work.

A transport like ``h5/`` and ``wxbot/``: server-rendered pages (Jinja, htmx
for inline actions, Flask-WTF CSRF on every POST) that call ``handlers/``.
Who may see and do what is ``handlers.staff.PERMISSIONS``; every view says
which permission it needs with ``@requires``.
"""
from flask import Blueprint

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static",
               static_url_path="/static")

from . import (applications, audit_pages, auth, distributors, exports, home, menu_editor, nav,  # noqa: E402,F401
               orders, products, reconcile, rules, staff_pages, stats, support, withdrawals)
