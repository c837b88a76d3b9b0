"""Creators for the distribution tests: users, applications, distributors,
made through the product's own handlers."""
from __future__ import annotations

import itertools

from handlers import applications, audit, outbox, users
from models import Distributor, FirstContact, User

_seq = itertools.count(1)


def make_user(nickname: str | None = None, openid: str | None = None) -> User:
    openid = openid or f"oTEST{next(_seq):06d}{'x' * 16}"
    user = users.record_contact(openid, FirstContact.SUBSCRIBE).user
    if nickname:
        user.nickname = nickname
    outbox.commit()
    return user


def make_distributor(nickname: str = "分销商", referrer: Distributor | None = None,
                     openid: str | None = None) -> Distributor:
    """A user brought by ``referrer`` (through their invite code) and approved."""
    user = make_user(nickname, openid)
    code = referrer.unit.invite_code if referrer else ""
    application = applications.apply_for_distributor(user, "张三", "13800138000", "想分享好东西", code)
    outbox.commit()
    distributor = applications.approve_application(application.id, actor=audit.Actor("test"))
    outbox.commit()
    return distributor
