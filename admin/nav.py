"""The side menu: each entry shows only to staff whose role may see it."""
from __future__ import annotations

from flask import current_app, g, request

from handlers import staff as staff_rules

from . import bp

MENU = [
    ("admin.index", "概览", "dashboard.view"),
    ("admin.applications", "分销申请", "applications.view"),
    ("admin.withdrawals", "提现", "withdrawals.view"),
    ("admin.orders", "订单", "orders.view"),
    ("admin.products", "商品", "products.view"),
    ("admin.audit_log", "操作日志", "audit.view"),
    ("admin.staff_list", "员工", "staff.manage"),
]


@bp.app_context_processor
def menu_context() -> dict:
    if not request.path.startswith("/admin") or g.get("staff") is None:
        return {}
    entries = [(endpoint, label) for endpoint, label, permission in MENU
               if endpoint in current_app.view_functions and staff_rules.may(g.staff.role, permission)]
    return {"menu": entries}
