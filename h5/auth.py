"""H5 identity through WeChat OAuth, and sessions that can be ended.

``snsapi_base`` is silent and gives the openid; ``snsapi_userinfo`` asks the
user and gives nickname and avatar, so it is used only when a page needs a
profile. ``state`` is a one-time value bound to the session cookie.

Who a browser is lives server-side: a login (and a guest's first order)
starts an ``H5Session`` row, and the signed cookie carries only its random
id. Every H5 request looks the row up by primary key; logging out revokes
it, so a copy of the cookie is worth nothing afterwards.
"""
from __future__ import annotations

import functools
import hmac
import logging
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import select, update
from wechatpy.exceptions import WeChatOAuthException

from handlers import outbox, users
from handlers.clock import now
from models import FirstContact, User, db
from models.h5_session import H5Session

from . import bp

log = logging.getLogger(__name__)
SCOPES = ("snsapi_base", "snsapi_userinfo")
SID = "sid"
# What says who the browser is (the openid, h5/shop.py's guest keys): kept only while a live session backs it.
IDENTITY = ("openid", "guest_mobile", "guest_orders", "guest_receiver")
SEEN_EVERY = timedelta(hours=1)  # last_seen_at is written at most this often


# -- the server-side session --------------------------------------------------

@bp.before_request
def check_session() -> None:
    """The cookie's session must be alive in the database: unknown, revoked
    or idle past the cookie's lifetime, the browser is nobody again."""
    if request.endpoint == "h5.static":
        return
    sid = session.get(SID)
    if sid is None:
        for key in IDENTITY:  # e.g. a cookie from before sessions were kept
            session.pop(key, None)
        return
    found = _session_and_user(sid) if isinstance(sid, str) and len(sid) <= 64 else None
    record, user = found if found is not None else (None, None)
    at = now()
    if record is None or record.revoked_at is not None \
            or record.last_seen_at < at - current_app.permanent_session_lifetime:
        session.clear()
        return
    g.h5_session, g.user = record, user
    if record.last_seen_at < at - SEEN_EVERY:
        record.last_seen_at = at
        db.session.commit()


def _session_and_user(sid: str):
    """The session's row and its user in one round trip: every signed-in page needs both."""
    return db.session.execute(select(H5Session, User).outerjoin(User, User.id == H5Session.user_id)
                              .where(H5Session.id == sid)).one_or_none()


@bp.context_processor
def session_context() -> dict:
    return {"signed_in": g.get("h5_session") is not None}


def start_session(user: User | None) -> None:
    """This browser is ``user`` (None: a guest buyer) from now on; the
    session it had before, if any, ends."""
    _revoke(session.get(SID))
    at = now()
    record = H5Session(id=secrets.token_urlsafe(32), user_id=user.id if user else None, created_at=at,
                       last_seen_at=at)
    db.session.add(record)
    outbox.commit()
    session.permanent = True
    session[SID] = record.id
    g.h5_session = record
    g.pop("user", None)


def ensure_guest_session() -> None:
    """A guest who places an order gets a session, so that the orders this
    browser may show can be forgotten by logging out."""
    if g.get("h5_session") is None:
        start_session(None)


def _revoke(sid: object) -> None:
    if isinstance(sid, str):
        db.session.execute(update(H5Session).where(H5Session.id == sid, H5Session.revoked_at.is_(None))
                           .values(revoked_at=now()).execution_options(synchronize_session=False))


def current_user() -> User | None:
    if "user" not in g:
        record = g.get("h5_session")
        g.user = db.session.get(User, record.user_id) if record is not None and record.user_id else None
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
    # Bytes: compare_digest raises TypeError for a str with non-ASCII characters.
    if not pending or not hmac.compare_digest(str(pending.get("state", "")).encode(), state.encode()):
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
    user = users.record_contact(openid, FirstContact.OAUTH).user
    if grant.get("scope", pending["scope"]) == "snsapi_userinfo":
        try:
            info = oauth.get_user_info(openid, grant["access_token"])
            users.update_profile(openid, nickname=info.get("nickname"),
                                 avatar_url=info.get("headimgurl"), unionid=info.get("unionid"))
        except WeChatOAuthException as exc:
            log.warning("userinfo refused for %s: %s", openid, exc.errcode)
    outbox.commit()
    # A page opened from the sandbox's phone simulator stays "inside WeChat".
    keep = {key: session[key] for key in ("sandbox_as", SID) if key in session}
    session.clear()
    session.update(keep)
    start_session(user)  # ends the browser's previous session, if any
    return redirect(pending["next"])


@bp.post("/auth/logout")
def logout():
    """End this browser's session everywhere: the row is revoked, so the
    cookie (and any copy of it) no longer says who anyone is."""
    _revoke(session.get(SID))
    outbox.commit()
    session.clear()
    return redirect(url_for("h5.shop"))
