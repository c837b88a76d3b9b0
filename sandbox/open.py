"""open.weixin.qq.com's OAuth page, played by the sandbox: instead of
WeChat knowing who you are, you choose which sandbox user you are."""
from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, session
from sqlalchemy import select

from models import SandboxUser, db

from . import state
from .people import create_user, simulator_openid

bp = Blueprint("sandbox_open", __name__, url_prefix="/sandbox/open", template_folder="templates")

STATE = re.compile(r"^[A-Za-z0-9]{0,128}$")
SCOPES = ("snsapi_base", "snsapi_userinfo")


def _refuse(message: str):
    return render_template("sandbox/oauth_error.html", message=message), 400


def _check(args) -> str | None:
    base = current_app.config["SETTINGS"]["app"]["base_url"]
    if args.get("appid") != state.account()["appid"]:
        return "appid 参数错误"
    if args.get("response_type") != "code":
        return "response_type 参数错误"
    if args.get("scope") not in SCOPES:
        return "Scope 参数错误或没有 Scope 权限"
    redirect_uri = urlsplit(args.get("redirect_uri", ""))
    if redirect_uri.scheme not in ("http", "https") or redirect_uri.netloc != urlsplit(base).netloc:
        return "redirect_uri 域名与后台配置不一致，错误码：10003"
    if not STATE.match(args.get("state", "")):
        return "state 参数错误"
    return None


@bp.get("/connect/oauth2/authorize")
def authorize():
    problem = _check(request.args)
    if problem:
        return _refuse(problem)
    me = session.get("sandbox_as") or simulator_openid()
    if request.args["scope"] == "snsapi_base" and session.get("sandbox_as"):
        # Opened from the simulator: WeChat's base grant is silent.
        code = state.issue_oauth_code(session["sandbox_as"], "snsapi_base")
        return redirect(_with_query(request.args["redirect_uri"], {"code": code, "state": request.args.get("state", "")}))
    people = db.session.scalars(select(SandboxUser).order_by(SandboxUser.id.desc()).limit(50)).all()
    people.sort(key=lambda p: p.openid != me)
    return render_template("sandbox/oauth.html", people=people, me=me, args=request.args,
                           userinfo=request.args["scope"] == "snsapi_userinfo")


@bp.post("/connect/oauth2/authorize")
def grant():
    problem = _check(request.form)
    if problem:
        return _refuse(problem)
    form = request.form
    if form.get("decision") == "deny":
        if form["scope"] == "snsapi_userinfo":
            return redirect(_with_query(form["redirect_uri"], {"state": form.get("state", "")}))
        return _refuse("已取消")
    if form.get("nickname", "").strip():
        user = create_user(form["nickname"])
        db.session.commit()
    else:
        user = db.session.scalars(
            select(SandboxUser).where(SandboxUser.openid == form.get("openid", ""))).one_or_none()
        if user is None:
            return _refuse("请选择一个用户，或输入昵称新建一个")
    code = state.issue_oauth_code(user.openid, form["scope"])
    return redirect(_with_query(form["redirect_uri"], {"code": code, "state": form.get("state", "")}))


def _with_query(url: str, params: dict) -> str:
    return url + ("&" if "?" in url else "?") + urlencode(params)
