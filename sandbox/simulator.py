"""The phone simulator at ``/sandbox/``: be a WeChat user without WeChat.

Every action goes to the product through the real ``/wx`` webhook, signed
(and in safe mode encrypted) as WeChat does, over HTTP; replies and pushed
messages show as a chat. Links open the H5 pages as the simulated user.
"""
from __future__ import annotations

import hashlib
import hmac
import html
import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from flask import (Blueprint, Response, abort, current_app, flash, jsonify, redirect, render_template, request,
                   session, url_for)
from sqlalchemy import select

from flask_wtf.csrf import ValidationError, validate_csrf

from handlers import audit, outbox
from handlers import clock
from handlers.clock import CHINA, now
from handlers.errors import DomainError
from models import SandboxMenu, SandboxMessage, SandboxQRCode, SandboxUser, db

from . import api, state
from .people import COOKIE, create_user, simulator_user
from .push import WeChatServer

log = logging.getLogger(__name__)
bp = Blueprint("sandbox", __name__, url_prefix="/sandbox", template_folder="templates",
               static_folder="static")
LINK = re.compile(r'&lt;a href=(?:&quot;|&#x27;)(https?://[^"\'<>\s]+?)(?:&quot;|&#x27;)&gt;(.*?)&lt;/a&gt;', re.S)


@bp.context_processor
def menu_from_repo():
    from wxbot.menu import load_menu

    return {"default_menu": load_menu}


@bp.context_processor
def product_clock():
    """The product's time (the sandbox clock) and how far it runs ahead, for the clock control."""
    ahead = clock.offset()
    return {"product_now": (clock.real_now() + ahead).astimezone(CHINA), "clock_offset": ahead,
            "clock_ahead_seconds": int(ahead.total_seconds()), "clock_days": CLOCK_DAYS,
            "clock_max_days": clock.MAX_STEP_DAYS, "clock_rules": _clock_rules}


CLOCK_DAYS = (1, 3, 7, 8)


def _clock_rules() -> str:
    """What the moves will show, from this product's settings."""
    settings = current_app.config["SETTINGS"]
    return (f"未付款订单 {settings['orders']['pay_timeout_minutes']} 分钟后取消 · "
            f"发货 {settings['orders']['auto_confirm_days']} 天后自动收货 · "
            f"收货 {settings['distribution']['freeze_days']} 天后佣金可提现")


def server() -> WeChatServer:
    settings = current_app.config["SETTINGS"]
    wechat = settings["wechat"]
    return WeChatServer(webhook_url=f"{settings['app']['base_url']}/wx", token=wechat["token"],
                        appid=wechat["appid"], encoding_aes_key=wechat["encoding_aes_key"])


def _record(openid: str, direction: str, msg_type: str, body: dict) -> None:
    db.session.add(SandboxMessage(openid=openid, direction=direction, msg_type=msg_type, body=body))


def _deliver(user: SandboxUser, fields: dict, shown: dict) -> None:
    """Show what the user did, push it to /wx, show the passive reply.

    The reply's place in the chat is taken before the push: messages the
    product sends while answering (inline jobs in the try-out) must come
    after it, as they do in WeChat."""
    _record(user.openid, "user", shown.pop("type", "text"), shown)
    slot = SandboxMessage(openid=user.openid, direction="reply", msg_type="pending", body={})
    db.session.add(slot)
    db.session.commit()  # the webhook runs in another request; don't hold SQLite's lock
    try:
        delivery = server().push(fields)
    except (requests.RequestException, ValueError) as exc:
        log.warning("simulator push failed: %s", exc)
        slot.direction, slot.msg_type, slot.body = "system", "text", {"content": f"推送失败：{exc}"}
        db.session.commit()
        return
    if delivery.status != 200:
        slot.direction, slot.msg_type = "system", "text"
        slot.body = {"content": f"公众号返回 HTTP {delivery.status}：{delivery.body[:200].decode(errors='replace')}"}
    elif delivery.reply:
        reply = delivery.reply
        kind = str(reply.get("MsgType", "text"))
        if kind == "text":
            body = {"content": reply.get("Content", "")}
        elif kind == "image":
            body = {"media_id": (reply.get("Image") or [{}])[0].get("MediaId", "")}
        elif kind == "news":
            body = {"articles": reply.get("Articles", [])}
        else:
            body = {"raw": {k: str(v) for k, v in reply.items()}}
        slot.msg_type, slot.body = kind, body
    else:
        db.session.delete(slot)  # "success": nothing to show
    db.session.commit()


def _need_user() -> SandboxUser:
    user = simulator_user()
    if user is None:
        abort(redirect(url_for("sandbox.home")))
    return user


def _back() -> Response:
    return redirect(url_for("sandbox.home") + "#end")


def render_text(content: str) -> str:
    """WeChat text: plain text whose <a href> tags are links and whose
    entities (``&lt;``, ``&amp;``: how the bot escapes a nickname) are the
    characters they name. Links into the product open as the simulated user."""
    escaped = html.escape(content)
    out, at = [], 0
    for m in LINK.finditer(escaped):
        url = html.unescape(m.group(1))
        out += [_entities(escaped[at:m.start()]),
                f'<a href="{html.escape(open_as_url(url))}">{_entities(m.group(2))}</a>']
        at = m.end()
    out.append(_entities(escaped[at:]))
    return "".join(out).replace("\n", "<br>")


ENTITY = re.compile(r"&amp;(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


def _entities(escaped: str) -> str:
    """Let the browser show an entity the text carried as its character, as
    WeChat does; an entity never makes a tag."""
    return ENTITY.sub(r"&\1;", escaped)


def open_as_url(url: str) -> str:
    base = current_app.config["SETTINGS"]["app"]["base_url"]
    if urlsplit(url).netloc == urlsplit(base).netloc:
        return url_for("sandbox.open_as", url=url)
    return url


@bp.get("/")
def home():
    user = simulator_user()
    people = db.session.scalars(select(SandboxUser).order_by(SandboxUser.id.desc()).limit(50)).all()
    if user is None:
        return render_template("sandbox/pick.html", people=people)
    messages = db.session.scalars(select(SandboxMessage).where(SandboxMessage.openid == user.openid)
                                  .order_by(SandboxMessage.id.desc()).limit(100)).all()[::-1]
    menu = db.session.scalars(select(SandboxMenu).where(SandboxMenu.appid == state.account()["appid"])).first()
    codes = db.session.scalars(select(SandboxQRCode).order_by(SandboxQRCode.id.desc()).limit(20)).all()
    return render_template("sandbox/phone.html", user=user, people=people, messages=messages,
                           menu=menu.definition if menu else None, codes=codes,
                           render_text=render_text, open_as_url=open_as_url, opened_from=opened_from,
                           safe_mode=server().safe_mode)


@bp.post("/users")
def new_user():
    user = create_user(request.form.get("nickname", ""))
    db.session.commit()
    response = _back()
    response.set_cookie(COOKIE, user.openid, httponly=True, samesite="Lax", max_age=30 * 86400)
    return response


@bp.post("/switch")
def switch():
    openid = request.form.get("openid", "")
    response = redirect(url_for("sandbox.moments" if request.form.get("back") == "moments" else "sandbox.home"))
    if openid and api.find_user(openid):
        response.set_cookie(COOKIE, openid, httponly=True, samesite="Lax", max_age=30 * 86400)
    else:
        response.delete_cookie(COOKIE)
    return response


def _scene_of(form) -> str | None:
    ticket = form.get("ticket", "")
    if ticket:
        code = db.session.scalars(select(SandboxQRCode).where(SandboxQRCode.ticket == ticket)).one_or_none()
        if code is None or (code.expires_at and code.expires_at < now()):
            flash("二维码已过期或无效")
            return None
        return code.scene
    scene = " ".join(form.get("scene", "").split())
    if not 1 <= len(scene) <= 64:
        flash("场景值需 1-64 个字符")
        return None
    return scene


@bp.post("/follow")
def follow():
    user = _need_user()
    if user.subscribed:
        flash("已经关注了")
        return _back()
    _subscribe(user, None)
    return _back()


def _subscribe(user: SandboxUser, scene: str | None) -> None:
    user.subscribed, user.subscribe_time, user.last_message_at = True, now(), now()
    user.subscribe_scene = "ADD_SCENE_QR_CODE" if scene else "ADD_SCENE_SEARCH"
    user.qr_scene_str = scene or ""
    shown = {"type": "event", "content": f"扫码关注（场景 {scene}）" if scene else "关注了公众号"}
    _deliver(user, server().subscribe(user.openid, scene), shown)


@bp.post("/scan")
def scan():
    user = _need_user()
    scene = _scene_of(request.form)
    if scene is None:
        return _back()
    if not user.subscribed:
        _subscribe(user, scene)
    else:
        user.last_message_at = now()
        _deliver(user, server().scan(user.openid, scene), {"type": "event", "content": f"扫描了二维码（场景 {scene}）"})
    return _back()


@bp.post("/unfollow")
def unfollow():
    user = _need_user()
    if not user.subscribed:
        flash("还没有关注")
        return _back()
    user.subscribed = False
    _deliver(user, server().event(user.openid, "unsubscribe", ""), {"type": "event", "content": "取消关注"})
    return _back()


@bp.post("/click")
def click():
    user = _need_user()
    key, name = request.form.get("key", ""), request.form.get("name", "")
    if not user.subscribed:
        flash("关注公众号后才能使用菜单")
        return _back()
    user.last_message_at = now()
    _deliver(user, server().click(user.openid, key), {"type": "event", "content": f"点击菜单「{name or key}」"})
    return _back()


@bp.post("/view")
def view():
    user = _need_user()
    url = request.form.get("url", "")
    if user.subscribed and url.startswith(("http://", "https://")):
        _deliver(user, server().event(user.openid, "VIEW", url), {"type": "event", "content": f"打开菜单链接 {url}"})
        return redirect(open_as_url(url))
    return _back()


@bp.post("/text")
def text():
    user = _need_user()
    content = request.form.get("content", "").strip()
    if not content:
        return _back()
    if not user.subscribed:
        flash("关注公众号后才能发消息")
        return _back()
    user.last_message_at = now()
    _deliver(user, server().text(user.openid, content[:2000]), {"content": content[:2000]})
    return _back()


@bp.post("/clock")
def move_clock():
    """Move the product's clock forward by whole days, or back to real time.
    The sandbox is CSRF-exempt (it plays outside parties), but this form
    changes the whole try-out's time, so it carries a token all the same."""
    back = redirect(url_for("sandbox.home") + "#clock")
    try:
        validate_csrf(request.form.get("csrf_token", ""))
    except ValidationError:
        flash("页面已过期，请刷新后再调整时间")
        return back
    actor = audit.Actor("sandbox:simulator", ip=(request.remote_addr or "")[:64])
    try:
        if request.form.get("action") == "reset":
            moved = clock.back_to_real_time(actor=actor)
        else:
            moved = clock.move_forward(request.form.get("days", ""), request.form.get("from", ""), actor=actor)
        outbox.commit()
    except DomainError as exc:
        outbox.rollback()
        flash(exc.message)
        return back
    clock.forget()
    clock.deliver_due()  # the notifications the catch-up wrote, as the worker's relay would
    at = moved.now.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")
    if not moved.offset:
        flash(f"已回到真实时间：{at}")
        return back
    done = moved.caught_up
    flash(f"时间已拨快到 {at}（共快了 {moved.offset_days:g} 天）。到此为止该发生的已补做："
          f"{done.expired} 笔未付款订单超时取消，{done.confirmed} 笔订单自动确认收货，"
          f"{done.settled} 条佣金转为可提现")
    return back


@bp.get("/open")
def open_as():
    """Open a product page as the simulated user: forget the browser's H5
    session, and let the OAuth page know who is asking."""
    url = request.args.get("url", "")
    base = current_app.config["SETTINGS"]["app"]["base_url"]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.netloc != urlsplit(base).netloc:
        abort(400)
    user = simulator_user()
    session.clear()
    if user:
        session["sandbox_as"] = user.openid
    return redirect(url)


@bp.get("/media/<media_id>")
def media(media_id: str):
    return api.media_content(media_id)


@bp.get("/avatar/<openid>.svg")
def avatar(openid: str):
    user = api.find_user(openid)
    letter = html.escape((user.nickname if user else "?")[:1])
    hue = sum(openid.encode()) % 360
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="132" height="132" viewBox="0 0 132 132">'
           f'<rect width="132" height="132" fill="hsl({hue},55%,52%)"/>'
           f'<text x="66" y="86" font-size="64" text-anchor="middle" fill="#fff" '
           f'font-family="sans-serif">{letter}</text></svg>')
    return Response(svg, mimetype="image/svg+xml")


# -- the JS-SDK and sharing -------------------------------------------------

SHARE_SOURCES = {"friend": "singlemessage", "timeline": "timeline"}
SHARE_FIELDS = {"title": 64, "desc": 120, "link": 1024, "imgUrl": 1024}


@bp.post("/jssdk/verify")
def jssdk_verify():
    """What WeChat checks when a page calls ``wx.config``: the appid, and the
    signature over the current jsapi_ticket and the page's own address."""
    data = api.json_body() or {}
    fields = [data.get(k) for k in ("appId", "timestamp", "nonceStr", "signature", "url")]
    if not all(isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) for v in fields):
        return jsonify(errMsg="config:invalid signature")
    appid, timestamp, nonce, signature, url = (str(v) for v in fields)
    if appid != state.account()["appid"]:
        return jsonify(errMsg="config:invalid url domain")  # WeChat's answer to a page of another account
    ticket = state.current_jsapi_ticket(appid)
    plain = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={timestamp}&url={url.split('#', 1)[0]}"
    if ticket is None or not hmac.compare_digest(hashlib.sha1(plain.encode()).hexdigest(), signature):
        return jsonify(errMsg="config:invalid signature")
    return jsonify(errMsg="config:ok")


def opened_from(link: str, kind: str) -> str:
    """A shared link as WeChat opens it: with ``from`` and ``isappinstalled`` added."""
    parts = urlsplit(link)
    query = parse_qsl(parts.query, keep_blank_values=True) + [("from", SHARE_SOURCES[kind]),
                                                              ("isappinstalled", "0")]
    return open_as_url(urlunsplit(parts._replace(query=urlencode(query))))


def _card(form) -> dict | None:
    card = {k: " ".join(str(form.get(k, "")).split())[:limit] for k, limit in SHARE_FIELDS.items()}
    if not card["link"].startswith(("http://", "https://")):
        return None
    card["title"] = card["title"] or card["link"]
    return card


@bp.post("/share")
def share():
    """The "…" menu of a page: 分享到朋友圈 posts the card to Moments;
    分享给朋友 asks to whom."""
    user = _need_user()
    kind, card = request.form.get("kind", ""), _card(request.form)
    if kind not in SHARE_SOURCES or card is None:
        flash("这个页面没有可分享的链接")
        return _back()
    if kind == "timeline":
        db.session.add(SandboxMessage(openid=user.openid, direction="moments", msg_type="link",
                                      body={**card, "nickname": user.nickname}))
        db.session.commit()
        flash("已分享到朋友圈")
        return redirect(url_for("sandbox.moments"))
    people = db.session.scalars(select(SandboxUser).where(SandboxUser.openid != user.openid)
                                .order_by(SandboxUser.id.desc()).limit(50)).all()
    return render_template("sandbox/share_pick.html", user=user, people=people, card=card)


@bp.post("/share/send")
def share_send():
    user = _need_user()
    card = _card(request.form)
    friend = api.find_user(request.form.get("to", ""))
    if card is None or friend is None or friend.openid == user.openid:
        flash("请选择一位朋友")
        return _back()
    db.session.add(SandboxMessage(openid=friend.openid, direction="share", msg_type="link",
                                  body={**card, "nickname": user.nickname, "from_openid": user.openid}))
    db.session.commit()
    flash(f"已发送给 {friend.nickname}：切换到 TA，在聊天里打开")
    return _back()


@bp.get("/moments")
def moments():
    """朋友圈: what the sandbox's people shared, newest first; whoever the
    simulator is holding opens a post as themselves."""
    posts = db.session.scalars(select(SandboxMessage).where(SandboxMessage.direction == "moments")
                               .order_by(SandboxMessage.id.desc()).limit(50)).all()
    return render_template("sandbox/moments.html", user=simulator_user(), posts=posts, opened_from=opened_from,
                           people=db.session.scalars(select(SandboxUser).order_by(SandboxUser.id.desc())
                                                     .limit(50)).all())
