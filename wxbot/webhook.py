"""``/wx``: WeChat's webhook. GET proves we own the token; POST carries
messages and events: in plaintext when no EncodingAESKey is configured, else
only encrypted (safe or compatible mode).

The request path does only fast work: check, parse, de-duplicate, run the
handler (database only), reply. Everything that talks to WeChat is queued.
Nothing here logs the query string: it holds the push's signature.
"""
from __future__ import annotations

import hashlib
import logging
import secrets

from flask import Blueprint, Response, current_app, request
from redis.commands.core import Script
from redis.exceptions import RedisError
from wechatpy.replies import BaseReply, EmptyReply, create_reply

from app.extensions import limiter, redis_store
from handlers import outbox, pushes, users
from handlers.errors import DomainError

from .dispatch import dispatch
from .security import (QUERY_PREFIX, Refused, SafeModeCrypto, check_signature, decrypt, message_from,
                       parse_xml_fields, query_key)

log = logging.getLogger(__name__)
bp = Blueprint("wxbot", __name__)
limiter.exempt(bp)  # no limit applies to WeChat's pushes: the limiter need not look at each

SUCCESS = "success"
DEDUPE_TTL = 600  # a done push's reply, for retries: WeChat retries within ~15 s; keep well beyond that
# A push being worked on is a lease, not a promise: WeChat gives up on an
# answer after 5 s and retries at about 5, 10 and 15 s. If the first attempt
# dies (worker killed, stuck on a lock), its lease ends before the last
# retries, which then do the work. A retry that takes over while the first
# attempt is merely slow is stopped by the push's row in the database.
PENDING_LEASE = 10
PENDING = b"\x00pending"
_CRYPTO = "fenxiao.wechat_crypto"


class Busy(Exception):
    """This push is being handled by another attempt right now."""


def _settings():
    return current_app.config["SETTINGS"]["wechat"]


def _crypto() -> SafeModeCrypto | None:
    wechat = _settings()
    if not wechat["encoding_aes_key"]:
        return None
    ours = (wechat["token"], wechat["encoding_aes_key"], wechat["appid"])
    cached = current_app.extensions.get(_CRYPTO)
    if cached is None or cached[0] != ours:  # made once per process, again if the settings change
        cached = current_app.extensions[_CRYPTO] = (ours, SafeModeCrypto(*ours))
    return cached[1]


def _plain(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain")


@bp.errorhandler(Refused)
def refused(exc: Refused) -> Response:
    log.warning("refused /wx %s: %s (from %s)", request.method, exc.reason, request.remote_addr)
    return _plain(exc.reason, exc.status)


@bp.errorhandler(Busy)
def busy(_exc: Busy) -> Response:
    # Not "success" (WeChat would consider the push handled and never send it
    # again, though the attempt doing it may still die) and not a 200 with an
    # empty body (which means the same to WeChat): a failed answer, so WeChat
    # retries, and the retry gets the reply once the work is done.
    return Response(b"", status=503, headers={"Retry-After": "5"})


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

    safe_mode = args.get("encrypt_type") == "aes"
    crypto = _crypto()
    if crypto is not None and not safe_mode:
        # With a key configured WeChat encrypts every push (safe and
        # compatible mode); a plaintext one is someone else's.
        raise Refused(403, "plaintext push refused: this account is configured for encrypted messages")
    fields = parse_xml_fields(body)
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
        msg = message_from(fields, body)
    except Exception as exc:  # wechatpy's parser trusts its input
        raise Refused(400, f"unparseable message: {type(exc).__name__}") from None

    reply_xml = _handle_once(msg, fields, query_key(args.get("signature", ""), timestamp, nonce), body, window)
    if not reply_xml:
        return _plain(SUCCESS)
    if safe_mode:
        reply_xml = crypto.encrypt_message(reply_xml, secrets.token_hex(8))
    return Response(reply_xml, mimetype="application/xml")


# One round trip for the two questions every push asks Redis. Is the signed
# query still this message's: the (timestamp, nonce, signature) is remembered
# with the digest of what will be acted on (the decrypted XML in safe mode, so
# a retry encrypted afresh is the same message) for two windows, since a
# timestamp is taken from ``window`` before to ``window`` after its time; the
# same triple with another message is refused (should Redis forget, the push's
# row in the database refuses it too). And may this attempt take the push (a
# lease), or what did the attempt that took it answer.
_CLAIM = Script(None, b"""
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) and redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {0, false}
end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'EX', ARGV[4]) then
    return {1, false}
end
return {2, redis.call('GET', KEYS[2])}
""")


QUERY_REUSED, TAKEN, ANSWERED, UNGUARDED = 0, 1, 2, 3


def _claim(conn, signed_query: str, message: bytes, window: int, key: str) -> tuple[int, bytes | None]:
    """Redis's answer, or UNGUARDED when it cannot give one: the push's row
    in the database alone then keeps the work single and the signed query to
    its one message, as after Redis lost its keys, so that WeChat's pushes
    are still answered while Redis is down (only without the lease that
    tells a retry to wait for an attempt still working)."""
    if redis_store.resting():
        return UNGUARDED, None
    digest = hashlib.sha256(message).hexdigest().encode()
    try:
        outcome, earlier = _CLAIM(keys=[QUERY_PREFIX + signed_query, key],
                                  args=[digest, 2 * window, PENDING, PENDING_LEASE], client=conn)
    except RedisError as exc:
        redis_store.failed()
        log.warning("Redis does not answer (%s): pushes are kept single by the database alone for %.0f s",
                    type(exc).__name__, redis_store.RESTING)
        return UNGUARDED, None
    return outcome, earlier


def _forget(conn, key: str) -> None:
    """Let WeChat's retry try again: the push's lease, or a signed query
    Redis learnt wrongly, goes (when Redis answers; else it expires)."""
    try:
        conn.delete(key)
    except RedisError as exc:
        log.warning("%s not deleted (%s); it expires by itself", key, type(exc).__name__)


def _handle_once(msg, fields: dict[str, str], signed_query: str, message: bytes, window: int) -> str:
    """Do the work once per push; a retry gets the first answer again.

    Redis answers WeChat's retries quickly; the push's row in the database,
    written in the transaction that does the work, keeps the work single
    when Redis forgot (flushed, restarted empty), is down, or a lease ran
    out, and keeps a signed query to its one message then too."""
    conn = redis_store.conn
    key = _dedupe_key(msg, fields)
    outcome, earlier = _claim(conn, signed_query, message, window, key)
    if outcome == QUERY_REUSED:
        raise Refused(403, "signed query already used for another message")
    if outcome == ANSWERED:
        if earlier in (None, PENDING):
            log.info("WeChat retry %s while another attempt works on it: asking for a later retry", key)
            raise Busy()
        log.info("WeChat retry %s recognised", key)
        return earlier.decode()
    guarded = outcome == TAKEN
    try:
        reply, done = _do_once(msg, pushes.key_of(key), signed_query)
    except Exception:
        outbox.rollback()
        if guarded:
            _forget(conn, key)
        raise
    if not done:  # refused by a rule, nothing changed: a retry may try again
        if guarded:
            _forget(conn, key)
        return reply
    if guarded:
        _after_commit(conn, key, reply)
    else:  # without Redis, as without its answer: the follower decides a profile batch
        users.decide_profile_batch(users.profiles_wanted())
    return reply


def _after_commit(conn, key: str, reply: str) -> None:
    """One Redis round trip after the work committed: the reply, for WeChat's
    retries, and, when the push made someone wait for a profile, whether
    their batch is already decided."""
    wanted = users.profiles_wanted()
    pipe = conn.pipeline(transaction=False)
    pipe.set(key, reply.encode(), ex=DEDUPE_TTL)
    if wanted:
        users.arm_profile_batch(pipe)
    try:
        armed_now = pipe.execute()[1:] == [True]  # SET NX: True if set, None if the mark was there
    except Exception as exc:  # noqa: BLE001 - committed: answer; a retry finds the push's row
        log.warning("push %s done but its reply not cached (%s)", key, exc)
        armed_now = True  # Redis cannot say: a batch of one, as without Redis
    if wanted:
        users.decide_profile_batch(armed_now)


def _do_once(msg, push_key: str, signed_query: str) -> tuple[str, bool]:
    """The push's work and its row, committed together: (reply, done)."""
    try:
        reply = _reply_for(msg)
    except DomainError as exc:
        outbox.rollback()
        earlier = _done_before(push_key, signed_query)
        if earlier is not None:  # refused now because it was done then (Redis had forgotten)
            return earlier, True
        log.warning("refused %s from %s: %s", msg.type, msg.source, exc.message)
        return create_reply(exc.message, msg, render=True), False
    if pushes.record(push_key, signed_query, reply):
        outbox.commit()
        return reply, True
    outbox.rollback()  # done before, or a replay: this attempt's work must not count
    earlier = _done_before(push_key, signed_query)
    if earlier is None:  # a twin doing it has not committed where we can see it yet
        raise Busy()
    return earlier, True


def _done_before(push_key: str, signed_query: str) -> str | None:
    """The reply of a push found in the database (Redis had forgotten it).
    A signed query whose row belongs to another message is a replay."""
    try:
        reply = pushes.reply_of(push_key)
        if reply is None and pushes.query_used(signed_query):
            # Redis, which forgot, has just learnt this message for the query:
            # unlearn it, so that WeChat's retry of the real one is answered.
            _forget(redis_store.conn, QUERY_PREFIX + signed_query)
            raise Refused(403, "signed query already used for another message")
    finally:
        outbox.rollback()
    if reply is not None:
        log.info("push %s was done before: answering its reply", push_key)
    return reply


def _reply_for(msg) -> str:
    reply = dispatch(msg)
    if reply is None or isinstance(reply, EmptyReply):
        return ""
    if not isinstance(reply, BaseReply):
        reply = create_reply(reply, msg)
    reply.source, reply.target = msg.target, msg.source
    return reply.render()
