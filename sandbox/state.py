"""Short-lived platform state (tokens, OAuth codes) kept in Redis, like WeChat's."""
from __future__ import annotations

import json
import secrets
import string

from flask import current_app

from app.extensions import redis_store

TOKEN_TTL = 7200
GRACE = 300  # WeChat keeps the previous access token alive ~5 minutes
CODE_TTL = 300
ALPHABET = string.ascii_letters + string.digits + "-_"


def opaque(n: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(n))


def new_openid() -> str:
    return "o" + opaque(27)


def account() -> dict:
    return current_app.config["SETTINGS"]["wechat"]


def issue_access_token(appid: str) -> str:
    conn = redis_store.conn
    token = opaque(136)
    previous = conn.get(f"sandbox:current-token:{appid}")
    pipe = conn.pipeline()
    if previous:
        pipe.expire(f"sandbox:token:{previous.decode()}", GRACE)
    pipe.set(f"sandbox:token:{token}", appid, ex=TOKEN_TTL)
    pipe.set(f"sandbox:current-token:{appid}", token, ex=TOKEN_TTL)
    pipe.execute()
    return token


def token_appid(token: str) -> str | None:
    value = redis_store.conn.get(f"sandbox:token:{token}")
    return value.decode() if value else None


def revoke_tokens(appid: str) -> None:
    """Make the current token invalid now (to exercise the 40001 path)."""
    conn = redis_store.conn
    current = conn.get(f"sandbox:current-token:{appid}")
    if current:
        conn.delete(f"sandbox:token:{current.decode()}", f"sandbox:current-token:{appid}")


def issue_oauth_code(openid: str, scope: str) -> str:
    code = opaque(32)
    redis_store.conn.set(f"sandbox:oauth-code:{code}", json.dumps({"openid": openid, "scope": scope}),
                         ex=CODE_TTL)
    return code


def redeem_oauth_code(code: str) -> tuple[str, dict | None]:
    """('ok', grant) once; ('used', None) after; ('invalid', None) if unknown."""
    conn = redis_store.conn
    raw = conn.getdel(f"sandbox:oauth-code:{code}")
    if raw is None:
        if conn.get(f"sandbox:oauth-used:{code}"):
            return "used", None
        return "invalid", None
    conn.set(f"sandbox:oauth-used:{code}", 1, ex=CODE_TTL)
    return "ok", json.loads(raw)


def issue_web_token(grant: dict) -> str:
    token = opaque(96)
    redis_store.conn.set(f"sandbox:web-token:{token}", json.dumps(grant), ex=TOKEN_TTL)
    return token


def web_token_grant(token: str) -> dict | None:
    raw = redis_store.conn.get(f"sandbox:web-token:{token}")
    return json.loads(raw) if raw else None


def jsapi_ticket(appid: str) -> str:
    """The account's JS-SDK ticket: the same one until it expires, as WeChat
    answers getticket."""
    conn = redis_store.conn
    current = conn.get(f"sandbox:jsapi-ticket:{appid}")
    if current:
        return current.decode()
    ticket = "kgt8ON7yVITDhtdwci0qe" + opaque(65)
    # Two requests at once both drawing: the first stored wins, both answer it.
    conn.set(f"sandbox:jsapi-ticket:{appid}", ticket, ex=TOKEN_TTL, nx=True)
    return conn.get(f"sandbox:jsapi-ticket:{appid}").decode()


def current_jsapi_ticket(appid: str) -> str | None:
    value = redis_store.conn.get(f"sandbox:jsapi-ticket:{appid}")
    return value.decode() if value else None


def expire_jsapi_ticket(appid: str) -> None:
    """Let the current ticket run out now (to exercise a page's re-signing)."""
    redis_store.conn.delete(f"sandbox:jsapi-ticket:{appid}")

