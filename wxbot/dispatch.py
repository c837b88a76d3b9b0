"""WeChat messages and events reach their handler through one registry,
keyed by message type (``text``) or event (``event:subscribe``), with one
fallback. Each returns the passive reply, or None for WeChat's ``success``."""
from __future__ import annotations

import logging
from typing import Callable

from wechatpy.messages import BaseMessage

from handlers import referrals, users
from handlers.codes import normalise_invite_code
from models import FirstContact, Source

from . import commands

log = logging.getLogger(__name__)
Handler = Callable[[BaseMessage], object | None]
HANDLERS: dict[str, Handler] = {}


def on(*kinds: str):
    def register(fn: Handler) -> Handler:
        for kind in kinds:
            HANDLERS[kind] = fn
        return fn

    return register


def kind_of(msg: BaseMessage) -> str:
    return f"event:{msg.event}" if msg.type == "event" else msg.type


def dispatch(msg: BaseMessage) -> object | None:
    return HANDLERS.get(kind_of(msg), fallback)(msg)


def fallback(msg: BaseMessage) -> None:
    # Any message from a person records them; unknown events (delivery
    # reports, location pings) do not count as the person reaching us.
    # wechatpy parses an event it does not know as UnknownMessage (type
    # "unknown"): ask the XML, not the class, whether this is an event.
    is_event = msg.type == "event" or str(msg._data.get("MsgType", "")).lower() == "event"
    if not is_event and msg.source:
        users.touch(msg.source, FirstContact.MESSAGE)
    log.info("no handler for %s; answering success", kind_of(msg))
    return None


@on("text")
def text(msg: BaseMessage) -> object:
    user = users.touch(msg.source, FirstContact.MESSAGE).user
    content = msg.content or ""
    key = commands.match(content)
    if key:
        return commands.run(key, user)
    if normalise_invite_code(content):
        return commands.invited(user, referrals.attribute_referral(user, Source.INVITE, content))
    return "没听懂这句话呢😊 发送「帮助」看看我能做什么，或点击下方菜单。"


@on("event:subscribe")
def subscribe(msg: BaseMessage) -> object:
    user = users.subscribe(msg.source).user
    return commands.welcome(user)


@on("event:subscribe_scan")
def subscribe_scan(msg: BaseMessage) -> object:
    """A follow through a parametric QR code: ``EventKey=qrscene_<scene>``."""
    new = referrals.new_follower_by_scene(msg.source, msg.scene_id or "")
    if new is not None:  # the common case, in two statements
        return commands.welcome(new.user, new.touch)
    user = users.subscribe(msg.source, FirstContact.SCAN).user
    return commands.welcome(user, referrals.attribute_referral(user, Source.QR, msg.scene_id or ""))


@on("event:scan")
def scan(msg: BaseMessage) -> object:
    """A follower scanned a parametric QR code: ``EventKey=<scene>``."""
    user = users.touch(msg.source, FirstContact.SCAN).user
    return commands.scanned(user, referrals.attribute_referral(user, Source.QR, msg.scene_id or ""))


@on("event:unsubscribe")
def unsubscribe(msg: BaseMessage) -> None:
    users.unsubscribe(msg.source)
    return None


@on("event:click")
def click(msg: BaseMessage) -> object | None:
    user = users.touch(msg.source, FirstContact.MESSAGE).user
    reply = commands.run(msg.key or "", user)
    if reply is None:
        log.warning("menu key %r has no command", msg.key)
        return commands.help_(user)
    return reply


@on("event:view")
def view(msg: BaseMessage) -> None:
    users.touch(msg.source, FirstContact.MESSAGE)
    return None


@on("event:templatesendjobfinish")
def template_delivered(msg: BaseMessage) -> None:
    # The raw MsgID: msg.id converts with int() and a malformed push would 500.
    log.info("template message %s to %s: %s", msg._data.get("MsgID"), msg.source, msg._data.get("Status"))
    return None
