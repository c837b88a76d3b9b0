"""api.weixin.qq.com, played by the sandbox: the endpoints Fenxiao uses,
with WeChat's request formats, response formats and error codes."""
from __future__ import annotations

import functools
import hmac
import io
import json
import re
from datetime import timedelta

import qrcode
from flask import Blueprint, Response, current_app, g, jsonify, request
from sqlalchemy import select

from handlers.clock import now
from models import SandboxMedia, SandboxMenu, SandboxMessage, SandboxQRCode, SandboxUser, db

from . import state

bp = Blueprint("sandbox_api", __name__, url_prefix="/sandbox/api")

CUSTOM_WINDOW = timedelta(hours=48)
MEDIA_LIMITS = {"image": 10 * 1024 * 1024, "voice": 2 * 1024 * 1024, "video": 10 * 1024 * 1024,
                "thumb": 64 * 1024}
IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif"}
MAX_PERMANENT_QR = 100_000


def wx_error(code: int, msg: str) -> Response:
    return jsonify(errcode=code, errmsg=f"{msg} rid: {state.opaque(8)}")


def ok(**fields) -> Response:
    return jsonify(errcode=0, errmsg="ok", **fields)


def needs_token(fn):
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        token = request.args.get("access_token", "")
        if not token:
            return wx_error(41001, "access_token missing")
        appid = state.token_appid(token)
        if appid is None:
            return wx_error(40001, "invalid credential, access_token is invalid or not latest")
        g.sandbox_appid = appid
        return fn(*args, **kwargs)

    return inner


def json_body() -> dict | None:
    raw = request.get_data()
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def find_user(openid: object) -> SandboxUser | None:
    if not openid or not isinstance(openid, str):  # JSON may carry any type
        return None
    return db.session.scalars(select(SandboxUser).where(SandboxUser.openid == openid)).one_or_none()


@bp.get("/cgi-bin/token")
def token():
    account = state.account()
    if request.args.get("grant_type") != "client_credential":
        return wx_error(40002, "invalid grant_type")
    if request.args.get("appid") != account["appid"]:
        return wx_error(40013, "invalid appid")
    if not hmac.compare_digest(request.args.get("secret", "").encode(), account["secret"].encode()):
        return wx_error(40125, "invalid appsecret")
    return jsonify(access_token=state.issue_access_token(account["appid"]), expires_in=state.TOKEN_TTL)


@bp.post("/cgi-bin/qrcode/create")
@needs_token
def qrcode_create():
    data = json_body()
    if data is None:
        return wx_error(47001, "data format error")
    action = data.get("action_name")
    info = data.get("action_info")
    scene = info.get("scene") if isinstance(info, dict) else None
    scene = scene if isinstance(scene, dict) else {}
    if action in ("QR_STR_SCENE", "QR_LIMIT_STR_SCENE"):
        value = scene.get("scene_str")
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            return wx_error(40053, "invalid action info, scene_str must be 1-64 characters")
    elif action in ("QR_SCENE", "QR_LIMIT_SCENE"):
        value = scene.get("scene_id")
        limit = 100_000 if action == "QR_LIMIT_SCENE" else 2**32 - 1
        if not isinstance(value, int) or not 1 <= value <= limit:
            return wx_error(40053, "invalid action info, scene_id out of range")
        value = str(value)
    else:
        return wx_error(40052, "invalid action name")
    expires_at = None
    if "LIMIT" not in action:
        seconds = data.get("expire_seconds", 60)
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            return wx_error(40053, "invalid action info, expire_seconds must be an integer")
        seconds = min(max(seconds, 60), 2_592_000)  # WeChat clamps to 30 days
        expires_at = now() + timedelta(seconds=seconds)
    else:
        existing = db.session.scalars(
            select(SandboxQRCode).where(SandboxQRCode.action_name == action, SandboxQRCode.scene == value)
        ).first()
        if existing:  # WeChat answers the same permanent code for the same scene
            return jsonify(ticket=existing.ticket, url=existing.url)
        count = db.session.scalar(select(db.func.count()).select_from(SandboxQRCode).where(
            SandboxQRCode.expires_at.is_(None)))
        if count >= MAX_PERMANENT_QR:
            return wx_error(45029, "qrcode count out of limit")
    ticket = "gQ" + state.opaque(94)
    code = SandboxQRCode(ticket=ticket, action_name=action, scene=value,
                         url=f"http://weixin.qq.com/q/{state.opaque(22)}", expires_at=expires_at)
    db.session.add(code)
    db.session.commit()
    fields = {"ticket": ticket, "url": code.url}
    if expires_at:
        fields["expire_seconds"] = int((expires_at - now()).total_seconds() + 0.5)
    return jsonify(**fields)


@bp.get("/cgi-bin/showqrcode")
def showqrcode():
    """Stands in for mp.weixin.qq.com/cgi-bin/showqrcode?ticket=…"""
    code = db.session.scalars(
        select(SandboxQRCode).where(SandboxQRCode.ticket == request.args.get("ticket", ""))
    ).one_or_none()
    if code is None or (code.expires_at and code.expires_at < now()):
        return Response("ticket invalid or expired", 404, mimetype="text/plain")
    buf = io.BytesIO()
    qrcode.make(code.url, border=2).save(buf, "PNG")
    return Response(buf.getvalue(), mimetype="image/png")


def scene_of_url(url: str) -> SandboxQRCode | None:
    """What a scan of the code with this content means (the simulator's camera)."""
    return db.session.scalars(select(SandboxQRCode).where(SandboxQRCode.url == url)).one_or_none()


@bp.get("/cgi-bin/user/info")
@needs_token
def user_info():
    user = find_user(request.args.get("openid", ""))
    if user is None:
        return wx_error(40003, "invalid openid")
    return jsonify(user_info_of(user))


def user_info_of(user: SandboxUser) -> dict:
    if not user.subscribed:
        return {"subscribe": 0, "openid": user.openid}
    # Since 2021-12-27: no nickname, no headimgurl.
    return {
        "subscribe": 1, "openid": user.openid, "language": "zh_CN",
        "subscribe_time": int(user.subscribe_time.timestamp()) if user.subscribe_time else 0,
        "remark": "", "groupid": 0, "tagid_list": [], "subscribe_scene": user.subscribe_scene or "ADD_SCENE_OTHERS",
        "qr_scene": 0, "qr_scene_str": user.qr_scene_str or "",
    }


@bp.post("/cgi-bin/user/info/batchget")
@needs_token
def user_info_batch():
    """Up to 100 users a call; one unknown openid refuses the whole call."""
    data = json_body()
    wanted = data.get("user_list") if data else None
    if not isinstance(wanted, list) or not wanted or not all(isinstance(w, dict) for w in wanted):
        return wx_error(47001, "data format error")
    if len(wanted) > 100:
        return wx_error(45158, "user_list size exceed the limit")
    found = [find_user(w.get("openid")) for w in wanted]
    if None in found:
        return wx_error(40003, "invalid openid")
    return jsonify(user_info_list=[user_info_of(user) for user in found])


TEMPLATE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@bp.post("/cgi-bin/message/template/send")
@needs_token
def template_send():
    data = json_body()
    if data is None:
        return wx_error(47001, "data format error")
    user = find_user(data.get("touser", ""))
    if user is None:
        return wx_error(40003, "invalid openid")
    if not user.subscribed:
        return wx_error(43004, "require subscribe")
    if not TEMPLATE_ID.match(str(data.get("template_id", ""))):
        return wx_error(40037, "invalid template_id")
    values = data.get("data")
    if not isinstance(values, dict) or not all(isinstance(v, dict) and "value" in v for v in values.values()):
        return wx_error(47001, "data format error, data must map keywords to {value}")
    msg = SandboxMessage(openid=user.openid, direction="template", msg_type="template",
                         body={"template_id": data["template_id"], "url": data.get("url"), "data": values})
    db.session.add(msg)
    db.session.commit()
    return ok(msgid=msg.id)


CUSTOM_TYPES = {"text": ("content",), "image": ("media_id",), "news": ("articles",), "link": ("url",)}


@bp.post("/cgi-bin/message/custom/send")
@needs_token
def custom_send():
    data = json_body()
    if data is None:
        return wx_error(47001, "data format error")
    user = find_user(data.get("touser", ""))
    if user is None:
        return wx_error(40003, "invalid openid")
    if not user.subscribed or not user.last_message_at or now() - user.last_message_at > CUSTOM_WINDOW:
        return wx_error(45015, "response out of time limit or subscription is canceled")
    kind = data.get("msgtype")
    if kind not in CUSTOM_TYPES or not isinstance(data.get(kind), dict):
        return wx_error(40008, "invalid message type")
    body = data[kind]
    if kind == "image" and not db.session.scalars(
            select(SandboxMedia).where(SandboxMedia.media_id == body.get("media_id", ""))).first():
        return wx_error(40007, "invalid media_id")
    if kind == "text" and not str(body.get("content", "")).strip():
        return wx_error(44003, "empty news data")
    db.session.add(SandboxMessage(openid=user.openid, direction="custom", msg_type=kind, body=body))
    db.session.commit()
    return ok()


@bp.post("/cgi-bin/media/upload")
@needs_token
def media_upload():
    kind = request.args.get("type", "")
    if kind not in MEDIA_LIMITS:
        return wx_error(40004, "invalid media type")
    upload = request.files.get("media")
    if upload is None:
        return wx_error(41005, "media data missing")
    content = upload.read(MEDIA_LIMITS[kind] + 1)
    if len(content) > MEDIA_LIMITS[kind]:
        return wx_error(40009, "invalid image size")
    content_type = next((t for magic, t in IMAGE_TYPES.items() if content.startswith(magic)), None)
    if kind in ("image", "thumb") and content_type is None:
        return wx_error(40005, "invalid file type")
    media = SandboxMedia(media_id=state.opaque(64), media_type=kind,
                         content_type=content_type or "application/octet-stream", content=content)
    db.session.add(media)
    db.session.commit()
    return jsonify(type=kind, media_id=media.media_id, created_at=int(media.created_at.timestamp()))


@bp.get("/cgi-bin/media/get")
@needs_token
def media_get():
    return media_content(request.args.get("media_id", ""))


def media_content(media_id: str) -> Response:
    media = db.session.scalars(select(SandboxMedia).where(SandboxMedia.media_id == media_id)).one_or_none()
    if media is None or now() - media.created_at > timedelta(days=3):
        return wx_error(40007, "invalid media_id")
    return Response(media.content, mimetype=media.content_type)


def menu_problem(menu: dict) -> tuple[int, str] | None:
    buttons = menu.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return 40016, "invalid button size"

    def check(button: dict, name_bytes: int) -> tuple[int, str] | None:
        name = button.get("name")
        if not isinstance(name, str) or not 0 < len(name.encode()) <= name_bytes:
            return 40018, "invalid button name size"
        kind = button.get("type")
        if kind == "click":
            key = button.get("key")
            if not isinstance(key, str) or not 0 < len(key.encode()) <= 128:
                return 40019, "invalid button key size"
        elif kind == "view":
            url = button.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 1024:
                return 40055, "invalid button url domain"
        else:
            return 40017, "invalid button type"
        return None

    for top in buttons:
        if not isinstance(top, dict):
            return 40016, "invalid button size"
        subs = top.get("sub_button")
        if subs:
            name = top.get("name")
            if not isinstance(name, str) or not 0 < len(name.encode()) <= 16:
                return 40018, "invalid button name size"
            if not isinstance(subs, list) or len(subs) > 5:
                return 40023, "invalid sub button size"
            for sub in subs:
                problem = check(sub, 60) if isinstance(sub, dict) else (40023, "invalid sub button size")
                if problem:
                    return problem
        else:
            problem = check(top, 16)
            if problem:
                return problem
    return None


@bp.post("/cgi-bin/menu/create")
@needs_token
def menu_create():
    data = json_body()
    if data is None:
        return wx_error(47001, "data format error")
    problem = menu_problem(data)
    if problem:
        return wx_error(*problem)
    menu = db.session.scalars(select(SandboxMenu).where(SandboxMenu.appid == g.sandbox_appid)).one_or_none()
    if menu is None:
        db.session.add(SandboxMenu(appid=g.sandbox_appid, definition=data))
    else:
        menu.definition = data
    db.session.commit()
    return ok()


@bp.get("/cgi-bin/menu/get")
@needs_token
def menu_get():
    menu = db.session.scalars(select(SandboxMenu).where(SandboxMenu.appid == g.sandbox_appid)).one_or_none()
    if menu is None:
        return wx_error(46003, "menu no exist")
    return jsonify(menu=menu.definition)


@bp.get("/cgi-bin/ticket/getticket")
@needs_token
def getticket():
    if request.args.get("type") != "jsapi":
        return wx_error(40002, "invalid ticket type")
    return ok(ticket=state.jsapi_ticket(g.sandbox_appid), expires_in=state.TOKEN_TTL)


@bp.get("/sns/oauth2/access_token")
def sns_access_token():
    account = state.account()
    args = request.args
    if args.get("appid") != account["appid"]:
        return wx_error(40013, "invalid appid")
    if not hmac.compare_digest(args.get("secret", "").encode(), account["secret"].encode()):
        return wx_error(40125, "invalid appsecret")
    if args.get("grant_type") != "authorization_code":
        return wx_error(40002, "invalid grant_type")
    status, grant = state.redeem_oauth_code(args.get("code", ""))
    if status == "used":
        return wx_error(40163, "code been used")
    if grant is None:
        return wx_error(40029, "invalid code")
    token = state.issue_web_token(grant)
    return jsonify(access_token=token, expires_in=state.TOKEN_TTL, refresh_token=state.opaque(96),
                   openid=grant["openid"], scope=grant["scope"], is_snapshotuser=0)


@bp.get("/sns/userinfo")
def sns_userinfo():
    grant = state.web_token_grant(request.args.get("access_token", ""))
    if grant is None:
        return wx_error(40001, "invalid credential, access_token is invalid or not latest")
    if grant["openid"] != request.args.get("openid"):
        return wx_error(40003, "invalid openid")
    if grant["scope"] != "snsapi_userinfo":
        return wx_error(48001, "api unauthorized")
    user = find_user(grant["openid"])
    if user is None:
        return wx_error(40003, "invalid openid")
    return jsonify(openid=user.openid, nickname=user.nickname, sex=0, province="", city="", country="",
                   headimgurl=avatar_url(user.openid), privilege=[])


def avatar_url(openid: str) -> str:
    return f"{current_app.config['SETTINGS']['app']['base_url']}/sandbox/avatar/{openid}.svg"
