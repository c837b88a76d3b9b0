"""The side menu: each entry shows only to staff whose role may see it."""
from __future__ import annotations

from flask import current_app, g, request

from handlers import staff as staff_rules

from . import bp

# (endpoint, label, permission, the endpoints' common prefix that lights the entry up)
MENU = [
    ("admin.index", "概览", "dashboard.view", "admin.index"),
    ("admin.applications", "分销申请", "applications.view", "admin.application"),
    ("admin.withdrawals", "提现", "withdrawals.view", "admin.withdrawal"),
    ("admin.orders", "订单", "orders.view", "admin.order"),
    ("admin.products", "商品", "products.view", "admin.product"),
    ("admin.distributors", "分销商", "distributors.view", "admin.distributor"),
    ("admin.stats", "统计", "stats.view", "admin.stats"),
    ("admin.reconcile", "对账", "reconcile.view", "admin.reconcile"),
    ("admin.rules", "规则设置", "rules.view", "admin.rule"),
    ("admin.menu_editor", "公众号菜单", "menu.view", "admin.menu_editor"),
    ("admin.exports", "导出", "exports", "admin.export"),
    ("admin.audit_log", "操作日志", "audit.view", "admin.audit"),
    ("admin.staff_list", "员工", "staff.manage", "admin.staff"),
]


@bp.app_context_processor
def menu_context() -> dict:
    if not request.path.startswith("/admin") or g.get("staff") is None:
        return {}
    here = request.endpoint or ""
    entries = [(endpoint, label, here.startswith(prefix)) for endpoint, label, permission, prefix in MENU
               if endpoint in current_app.view_functions and staff_rules.may(g.staff.role, permission)]
    return {"menu": entries}
