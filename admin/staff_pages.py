"""Staff management (owner only): the accounts, a new one, disable and
enable, a change of role. Every change goes through handlers.staff, which
audits it."""
from __future__ import annotations

from flask import render_template, url_for
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from handlers import staff as staff_rules
from handlers.errors import DomainError

from . import bp
from .auth import actor, requires
from .exports import button as export_button
from .support import done, run

class CreateForm(FlaskForm):
    name = StringField("用户名", validators=[DataRequired("请输入用户名"), Length(max=64)])
    role = StringField("角色", validators=[Length(max=16)])  # a <select> in the page; the handler checks it
    password = PasswordField("初始密码", validators=[DataRequired("请输入初始密码"), Length(max=256)])


class DisableForm(FlaskForm):
    reason = StringField("原因", validators=[DataRequired("请写明停用原因"), Length(max=500, message="原因最多 500 字")])


class RoleForm(FlaskForm):
    role = StringField("角色", validators=[Length(max=16)])
    reason = StringField("原因", validators=[Length(max=500, message="原因最多 500 字")])


def _list(form: CreateForm, error: str | None = None, status: int = 200):
    return render_template("admin/staff.html", members=staff_rules.all_staff(), last=staff_rules.last_logins(),
                           form=form, error=error, export=export_button("staff", {})), status


def _first_error(form: FlaskForm) -> str:
    return next(iter(form.errors.values()))[0]


@bp.get("/staff")
@requires("staff.manage")
def staff_list():
    return _list(CreateForm(formdata=None))


@bp.post("/staff")
@requires("staff.manage")
def staff_create():
    form = CreateForm()
    if not form.validate():
        return _list(form, _first_error(form), 400)
    member = run(staff_rules.create_staff, form.name.data, form.role.data or "", form.password.data, actor=actor())
    return done(f"已创建员工 {member.name}（{staff_rules.ROLE_NAMES[member.role]}），请把初始密码当面交给本人",
                url_for("admin.staff_list"))


@bp.post("/staff/<id:staff_id>/disable")
@requires("staff.manage")
def staff_disable(staff_id: int):
    form = DisableForm()
    if not form.validate():
        raise DomainError(_first_error(form))
    member = run(staff_rules.disable_id, staff_id, actor=actor(), reason=form.reason.data.strip())
    return done(f"已停用 {member.name}，其登录已全部退出", url_for("admin.staff_list"))


@bp.post("/staff/<id:staff_id>/enable")
@requires("staff.manage")
def staff_enable(staff_id: int):
    member = run(staff_rules.enable_id, staff_id, actor=actor())
    return done(f"已启用 {member.name}", url_for("admin.staff_list"))


@bp.post("/staff/<id:staff_id>/role")
@requires("staff.manage")
def staff_role(staff_id: int):
    form = RoleForm()
    if not form.validate():
        raise DomainError(_first_error(form))
    member = run(staff_rules.change_role, staff_id, form.role.data or "", actor=actor(),
                 reason=(form.reason.data or "").strip())
    return done(f"{member.name} 的角色现在是 {staff_rules.ROLE_NAMES[member.role]}，需重新登录",
                url_for("admin.staff_list"))
