"""The sandbox's WeChat users, and which one the simulator is holding."""
from __future__ import annotations

from flask import request
from sqlalchemy import select

from models import SandboxUser, db

from . import state

COOKIE = "sandbox_openid"


def create_user(nickname: str) -> SandboxUser:
    nickname = " ".join(nickname.split())[:32] or "新用户"
    user = SandboxUser(openid=state.new_openid(), nickname=nickname)
    db.session.add(user)
    db.session.flush()
    return user


def simulator_openid() -> str | None:
    return request.cookies.get(COOKIE)


def simulator_user() -> SandboxUser | None:
    openid = simulator_openid()
    if not openid:
        return None
    return db.session.scalars(select(SandboxUser).where(SandboxUser.openid == openid)).one_or_none()
