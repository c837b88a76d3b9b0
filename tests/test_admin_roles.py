"""The whole role × route matrix (issue 10, item 3), taken from
``app.url_map``: every admin view names a permission; each role gets 403
exactly where ``handlers.staff.may`` says no, never a 5xx; a POST its role
may not make is refused with a valid CSRF token and changes nothing."""
from __future__ import annotations

from sqlalchemy import func, select

from admin_helpers import PASSWORD, ROLES, token
from handlers import staff as staff_rules
from models import AuditEntry, db
from test_admin_auth import _snapshot
from test_every_page import admin_url, fillable, world  # noqa: F401  (world: the fixture)

EXEMPT = {"admin.static"}  # Flask's static files view


def admin_rules(app, method: str) -> list:
    return sorted((r for r in app.url_map.iter_rules() if r.endpoint.startswith("admin.")
                   and r.endpoint not in EXEMPT and method in r.methods), key=lambda r: (r.rule, r.endpoint))


def test_every_admin_view_names_a_permission(app):
    problems = []
    for endpoint, view in sorted(app.view_functions.items()):
        if not endpoint.startswith("admin.") or endpoint in EXEMPT:
            continue
        permission = getattr(view, "permission", None)
        if permission is None:
            problems.append(f"{endpoint}: no @requires(...)")
        elif permission != "public" and permission not in staff_rules.PERMISSIONS:
            problems.append(f"{endpoint}: unknown permission {permission!r}")
    public = sorted(e for e, v in app.view_functions.items() if getattr(v, "permission", None) == "public")
    assert not problems, "\n".join(problems)
    assert public == ["admin.login"], f"only the login page may be open to anyone: {public}"


def _audit_rows() -> int:
    """Audit rows but downloads: fetching an export's file is a GET that is recorded on purpose."""
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(AuditEntry)
                             .where(AuditEntry.action != "export.download"))


def test_each_role_gets_403_exactly_where_its_permissions_end(app, base, world):
    mismatches: list[str] = []
    get_rules, post_rules = admin_rules(app, "GET"), admin_rules(app, "POST")
    assert {r.endpoint for r in get_rules} >= {"admin.index", "admin.staff_list", "admin.audit_log"}
    before = _snapshot()
    audit_rows = _audit_rows()
    with app.test_request_context():
        for role in ROLES:
            browser = world.browsers[role]
            csrf = token(browser.get(f"{base}/admin/").text)
            for rule in get_rules:
                permission = app.view_functions[rule.endpoint].permission
                if permission == "public" or not fillable(rule):
                    continue
                path = admin_url(rule, world, role)
                res = browser.get(base + path, allow_redirects=False)
                allowed = staff_rules.may(role, permission)
                if res.status_code >= 500 or (res.status_code == 403) == allowed:
                    mismatches.append(f"{role}: GET {path} ({rule.endpoint}, {permission}) → {res.status_code}")
            for rule in post_rules:
                permission = app.view_functions[rule.endpoint].permission
                if permission == "public" or staff_rules.may(role, permission) or not fillable(rule):
                    continue  # a POST the role may make would change the world the others walk
                path = admin_url(rule, world, role)
                form = {"csrf_token": csrf, "reason": "越权", "decision": "approve", "role": "owner",
                        "name": "sneaky", "password": PASSWORD, "ids": "1"}
                for htmx in (False, True):
                    headers = {"HX-Request": "true", "X-CSRFToken": csrf} if htmx else {}
                    res = browser.post(base + path, data=form, headers=headers, allow_redirects=False)
                    if res.status_code != 403:
                        mismatches.append(f"{role}: POST {path} ({rule.endpoint}, {permission})"
                                          f"{' htmx' if htmx else ''} → {res.status_code}")
            # and the role is still logged in: nothing above logged it out
            if browser.get(f"{base}/admin/", allow_redirects=False).status_code != 200:
                mismatches.append(f"{role}: no longer logged in after the walk")
    if _audit_rows() != audit_rows:
        mismatches.append(f"the audit log grew by {_audit_rows() - audit_rows} rows")
    after = _snapshot()
    mismatches += [f"table {name} changed" for name in before if before[name] != after[name]]
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)
