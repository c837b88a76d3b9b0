"""``/wx``: WeChat's webhook. GET proves we own the token; POST carries
messages and events, in plaintext or safe mode (AES).

The request path does only fast work: check, parse, de-duplicate, run the
handler (database only), reply. Everything that talks to WeChat is queued.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.replies import BaseReply, EmptyReply, create_reply
from wechatpy.utils import random_string

from app.extensions import redis_store
from handlers import outbox
from handlers.errors import DomainError

from .dispatch import dispatch
from .security import Refused, check_signature, decrypt, parse_xml_fields

log = logging.getLogger(__name__)
bp = Blueprint("wxbot", __name__)

SUCCESS = "success"
DEDUPE_TTL = 600  # WeChat retries within ~15 s; keep well beyond that
PENDING = b"\x00pending"


def _settings():
    return current_app.config["SETTINGS"]["wechat"]


def _crypto() -> WeChatCrypto | None:
    wechat = _settings()
    if not wechat["encoding_aes_key"]:
        return None
    return WeChatCrypto(wechat["token"], wechat["encoding_aes_key"], wechat["appid"])


def _plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.errorhandler(Refused)
def refused(exc: Refused) -> Response:
    log.warning("refused /wx %s: %s (from %s)", request.method, exc.reason, request.remote_addr)
    return _plain(exc.reason, exc.status)


@bp.get("/wx")
def verify() -> Response:
    wechat = _settings()
    args = request.args
    check_signature(wechat["token"], args.get("signature", ""), args.get("timestamp", ""),
                    args.get("nonce", ""), window=wechat["replay_window_seconds"])
    return _plain(args.get("echostr", ""))


def _read_body(limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise Refused(413, "body too large")
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        raise Refused(413, "body too large")
    if not body.strip():
        raise Refused(400, "empty body")
    return body


def _dedupe_key(msg, fields: dict[str, str]) -> str:
    msg_id = fields.get("MsgId") or fields.get("MsgID")
    if msg_id and msg.type != "event":
        return f"wx:seen:msg:{msg_id}"
    # A retry repeats EventKey too; two different menu taps in one second do not.
    return (f"wx:seen:evt:{msg.source}:{fields.get('CreateTime', '')}:{fields.get('Event', msg.type)}"
            f":{fields.get('EventKey', '')}")


@bp.post("/wx")
def receive() -> Response:
    wechat = _settings()
    args = request.args
    window = wechat["replay_window_seconds"]
    body = _read_body(wechat["max_body_bytes"])
    timestamp, nonce = args.get("timestamp", ""), args.get("nonce", "")
    check_signature(wechat["token"], args.get("signature", ""), timestamp, nonce, window=window)

    fields = parse_xml_fields(body)
    safe_mode = args.get("encrypt_type") == "aes"
    crypto = _crypto()
    if safe_mode:
        if crypto is None:
            raise Refused(400, "safe mode request but no encoding_aes_key configured")
        body = decrypt(crypto, fields, args.get("msg_signature", ""), timestamp, nonce,
                       wechat["token"], window)
        fields = parse_xml_fields(body)
    elif "Encrypt" in fields:
        raise Refused(400, "encrypted body without encrypt_type=aes")

    if not fields.get("MsgType") or not fields.get("FromUserName"):
        raise Refused(400, "missing MsgType or FromUserName")
    try:
        msg = parse_message(body)
    except Exception as exc:  # wechatpy's parser trusts its input
        raise Refused(400, f"unparseable message: {type(exc).__name__}") from None

    reply_xml = _handle_once(msg, fields)
    if not reply_xml:
        return _plain(SUCCESS)
    if safe_mode:
        reply_xml = crypto.encrypt_message(reply_xml, random_string(16))
    return Response(reply_xml, mimetype="application/xml")


def _handle_once(msg, fields: dict[str, str]) -> str:
    """Do the work once per push; a retry gets the first answer again."""
    conn = redis_store.conn
    key = _dedupe_key(msg, fields)
    if not conn.set(key, PENDING, nx=True, ex=DEDUPE_TTL):
        earlier = conn.get(key)
        log.info("WeChat retry %s recognised", key)
        return "" if earlier in (None, PENDING) else earlier.decode()
    try:
        reply = _reply_for(msg)
        outbox.commit()
    except DomainError as exc:
        outbox.rollback()
        conn.delete(key)
        log.warning("refused %s from %s: %s", msg.type, msg.source, exc.message)
        return create_reply(exc.message, msg, render=True)
    except Exception:
        outbox.rollback()
        conn.delete(key)  # let WeChat's retry try again
        raise
    conn.set(key, reply.encode(), ex=DEDUPE_TTL)
    return reply


def _reply_for(msg) -> str:
    reply = dispatch(msg)
    if reply is None or isinstance(reply, EmptyReply):
        return ""
    if not isinstance(reply, BaseReply):
        reply = create_reply(reply, msg)
    reply.source, reply.target = msg.target, msg.source
    return reply.render()
