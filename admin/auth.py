"""Staff logins: the admin's own cookie, the login and logout, TOTP, and
``@requires`` — the permission every admin view names.

The admin cookie (``fx_admin``, path /admin, SameSite=Strict) is separate
from the H5 session: it carries a random token whose hash is a
``staff_sessions`` row, which logout, disabling the account or changing its
password revokes. CSRF tokens come from Flask-WTF as on the H5 pages; htmx
sends the token in the X-CSRFToken header (base.html).
"""
from __future__ import annotations

import functools
from typing import Callable
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from app.extensions import limiter
from handlers import audit, outbox
from handlers import staff as staff_rules
from handlers.errors import DomainError
from models import db

from . import bp

COOKIE = "fx_admin"
PUBLIC = "public"  # a view anyone may open: the login page, the static files
# While an owner or finance account that must use 2FA has none yet, only these answer.
DURING_SETUP = {"admin.two_factor", "admin.logout", "admin.static"}


def requires(permission: str) -> Callable:
    """The view answers 403 to staff whose role lacks ``permission``."""
    if permission != PUBLIC and permission not in staff_rules.PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if permission != PUBLIC and not staff_rules.may(g.staff.role, permission):
                abort(403)
            return view(*args, **kwargs)

        wrapped.permission = permission
        return wrapped

    return decorate


def can(permission: str) -> bool:
    staff = g.get("staff")
    return staff is not None and staff_rules.may(staff.role, permission)


def actor() -> audit.Actor:
    return audit.Actor(g.staff.name, staff_id=g.staff.id, role=g.staff.role, ip=request.remote_addr or "")


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


@bp.before_request
def check_login():
    view = current_app.view_functions.get(request.endpoint or "")
    if request.endpoint == "admin.static" or getattr(view, "permission", None) == PUBLIC:
        return None
    record = staff_rules.session_for(request.cookies.get(COOKIE, ""))
    if record is None:
        db.session.rollback()
        target = url_for("admin.login", next=request.full_path if request.method == "GET" else None)
        if is_htmx():
            return "", 401, {"HX-Redirect": target}
        return redirect(target)
    if db.session.dirty:
        db.session.commit()  # last_seen_at, written at most once a minute
    g.staff_session, g.staff = record, record.staff
    if not record.fully_signed_in and request.endpoint not in DURING_SETUP:
        return redirect(url_for("admin.two_factor"))
    return None


@bp.app_context_processor
def staff_context() -> dict:
    if not request.path.startswith("/admin"):
        return {}
    return {"staff": g.get("staff"), "can": can, "role_names": staff_rules.ROLE_NAMES}


# -- login and logout -----------------------------------------------------------

class LoginForm(FlaskForm):
    name = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=64)])
    password = PasswordField("密码", validators=[DataRequired("请输入密码"), Length(max=256)])
    code = StringField("动态码", validators=[Length(max=16)])


def _account_key() -> str:
    return "admin-login:" + (request.form.get("name") or "").strip().lower()[:64]


def _failed(response) -> bool:
    return response.status_code == 401


def _safe_next(target: str | None) -> str:
    """Only a path inside the admin: never an open redirect."""
    if target and target.startswith("/admin") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return url_for("admin.index")


@bp.route("/login", methods=["GET", "POST"])
@requires(PUBLIC)
@limiter.limit("5 per 15 minutes", key_func=_account_key, methods=["POST"], deduct_when=_failed,
               error_message="这个账号登录失败次数过多，请 15 分钟后再试")
@limiter.limit("20 per 15 minutes", methods=["POST"], deduct_when=_failed,
               error_message="登录失败次数过多，请 15 分钟后再试")
def login():
    form = LoginForm()
    if not form.validate_on_submit():
        status = 401 if request.method == "POST" else 200
        error = next(iter(form.errors.values()), [None])[0] if request.method == "POST" else None
        return render_template("admin/login.html", form=form, error=error), status
    try:
        member = staff_rules.authenticate(form.name.data, form.password.data, form.code.data or "")
    except DomainError as exc:
        outbox.rollback()
        return render_template("admin/login.html", form=form, error=exc.message), 401
    token = staff_rules.start_session(member, request.remote_addr or "")
    audit.record(audit.Actor(member.name, member.id, member.role, request.remote_addr or ""), "staff.login",
                 "staff", member.id)
    outbox.commit()
    response = redirect(_safe_next(request.args.get("next")))
    response.set_cookie(COOKIE, token, max_age=current_app.config["SETTINGS"]["admin"]["session_hours"] * 3600,
                        path="/admin", httponly=True, samesite="Strict",
                        secure=current_app.config["SESSION_COOKIE_SECURE"])
    return response


@bp.errorhandler(429)
def too_many_tries(exc):
    """The limit's own message (which limit was hit), on the login form itself;
    app/errors.py's page would say only "too many tries"."""
    if request.endpoint == "admin.login" and not is_htmx():
        return render_template("admin/login.html", form=LoginForm(), error=exc.description), 429
    message = "尝试次数过多，请稍后再试"
    if is_htmx():
        return render_template("admin/_alert.html", message=message, kind="error"), 429
    return render_template("admin/error.html", status=429, message=message), 429


@bp.post("/logout")
@requires("dashboard.view")
def logout():
    staff_rules.revoke(request.cookies.get(COOKIE, ""))
    outbox.commit()
    response = redirect(url_for("admin.login"))
    response.delete_cookie(COOKIE, path="/admin")
    return response


# -- two-factor setup and the password --------------------------------------------

class TwoFactorForm(FlaskForm):
    code = StringField("动态码", validators=[DataRequired("请输入动态码"), Length(max=16)])


@bp.route("/me/2fa", methods=["GET", "POST"])
@requires("dashboard.view")
def two_factor():
    form = TwoFactorForm()
    member = g.staff
    if member.has_2fa:
        return render_template("admin/two_factor.html", done=True, form=form)
    secret = session.get("admin_totp_secret") or staff_rules.new_totp_secret()
    session["admin_totp_secret"] = secret
    error = None
    if form.validate_on_submit():
        try:
            staff_rules.enable_totp(member.id, secret, form.code.data, actor())
            staff_rules.finish_2fa_setup(g.staff_session)
            outbox.commit()
            session.pop("admin_totp_secret", None)
            return redirect(url_for("admin.index"))
        except DomainError as exc:
            outbox.rollback()
            error = exc.message
    return render_template("admin/two_factor.html", done=False, form=form, secret=secret,
                           uri=staff_rules.totp_uri(member, secret), error=error,
                           required=staff_rules.must_set_up_2fa(member))


class PasswordForm(FlaskForm):
    old = PasswordField("原密码", validators=[DataRequired("请输入原密码")])
    new = PasswordField("新密码", validators=[DataRequired("请输入新密码")])


@bp.route("/me/password", methods=["GET", "POST"])
@requires("dashboard.view")
def password():
    form = PasswordForm()
    error = None
    if form.validate_on_submit():
        try:
            staff_rules.change_password(g.staff.id, form.old.data, form.new.data, actor())
            outbox.commit()
            response = redirect(url_for("admin.login"))
            response.delete_cookie(COOKIE, path="/admin")
            return response
        except DomainError as exc:
            outbox.rollback()
            error = exc.message
    return render_template("admin/password.html", form=form, error=error)
