"""H5 identity through WeChat OAuth.

``snsapi_base`` is silent and gives the openid; ``snsapi_userinfo`` asks the
user and gives nickname and avatar, so it is used only when a page needs a
profile. ``state`` is a one-time value bound to the session cookie.
"""
from __future__ import annotations

import functools
import hmac
import logging
import secrets
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, session, url_for
from wechatpy.exceptions import WeChatOAuthException

from handlers import outbox, users
from models import FirstContact, User

from . import bp

log = logging.getLogger(__name__)
SCOPES = ("snsapi_base", "snsapi_userinfo")


def current_user() -> User | None:
    if "user" not in g:
        openid = session.get("openid")
        g.user = users.get_user(openid) if openid else None
    return g.user


def login_required(view=None, *, profile: bool = False):
    """Pages that need to know who is looking; ``profile`` asks for the
    nickname and avatar when we do not have them yet."""

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            user = current_user()
            if user is None or (profile and not user.nickname):
                return redirect(url_for("h5.login", next=request.full_path.rstrip("?"),
                                        scope=SCOPES[profile]))
            return fn(*args, **kwargs)

        return inner

    return wrap(view) if view else wrap


def _safe_next(target: str | None) -> str:
    parts = urlsplit(target or "")
    # Control characters (CR/LF) would make the Location header fail with a 500.
    if parts.scheme or parts.netloc or not parts.path.startswith("/h5/") or not target.isprintable():
        return url_for("h5.index")
    return target


def _redirect_uri() -> str:
    return f"{current_app.config['SETTINGS']['app']['base_url']}/h5/auth/callback"


@bp.get("/auth/login")
def login():
    from wxbot.client import oauth_client

    scope = request.args.get("scope", "snsapi_base")
    if scope not in SCOPES:
        scope = "snsapi_base"
    state = secrets.token_hex(16)
    session["oauth"] = {"state": state, "next": _safe_next(request.args.get("next")), "scope": scope}
    return redirect(oauth_client(_redirect_uri(), scope, state).authorize_url)


def _failed(message: str, status: int = 400):
    return render_template("message.html", title="登录失败", message=message,
                           action_url=url_for("h5.index"), action_text="重新进入"), status


@bp.get("/auth/callback")
def callback():
    from wxbot.client import oauth_client

    pending = session.pop("oauth", None)
    state, code = request.args.get("state", ""), request.args.get("code", "")
    if not pending or not hmac.compare_digest(str(pending.get("state", "")), state):
        return _failed("登录链接已失效或已被使用，请重新打开页面。")
    if not code:
        return _failed("你没有同意授权，无法继续。")
    oauth = oauth_client(_redirect_uri(), pending["scope"], state)
    try:
        grant = oauth.fetch_access_token(code)
    except WeChatOAuthException as exc:
        log.warning("OAuth code exchange refused: %s %s", exc.errcode, exc.errmsg)
        return _failed("授权已过期，请重新打开页面。")
    openid = grant["openid"]
    users.record_contact(openid, FirstContact.OAUTH)
    if grant.get("scope", pending["scope"]) == "snsapi_userinfo":
        try:
            info = oauth.get_user_info(openid, grant["access_token"])
            users.update_profile(openid, nickname=info.get("nickname"),
                                 avatar_url=info.get("headimgurl"), unionid=info.get("unionid"))
        except WeChatOAuthException as exc:
            log.warning("userinfo refused for %s: %s", openid, exc.errcode)
    outbox.commit()
    # A page opened from the sandbox's phone simulator stays "inside WeChat".
    keep = {key: session[key] for key in ("sandbox_as",) if key in session}
    session.clear()
    session.update(keep)
    session.permanent = True
    session["openid"] = openid
    return redirect(pending["next"])


@bp.get("/auth/logout")
def logout():
    session.clear()
    return redirect(url_for("h5.index"))
