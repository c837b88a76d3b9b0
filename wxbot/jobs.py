"""Background jobs: every outbound WeChat call runs here, from an outbox row.

A job is a transport like the webhook: it calls WeChat and hands the result
to a handler; the outbox runner commits once, with the row marked done.
Raising makes the row retry later with backoff (``[queue] max_retries``);
errors that a retry cannot fix are logged, noted on the row and swallowed.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

from wechatpy.exceptions import WeChatClientException

from app.extensions import redis_store
from handlers import notifications, outbox, referrals, users

from .client import wechat_client

log = logging.getLogger(__name__)

# WeChat error codes that retrying will never fix.
INVALID_OPENID = 40003
OUT_OF_WINDOW = 45015  # customer-service window (48 h) closed, or unfollowed
USER_REFUSED = 43004  # the user does not follow the account
PERMANENT = {INVALID_OPENID, OUT_OF_WINDOW, USER_REFUSED, 40037, 41028, 43101}
MEDIA_TTL = 3 * 86400 - 3600  # a temporary media id lives 3 days


job = outbox.job


def _permanent(exc: WeChatClientException, what: str) -> bool:
    if exc.errcode in PERMANENT:
        log.warning("%s refused by WeChat for good: %s %s", what, exc.errcode, exc.errmsg)
        outbox.note_error(f"refused for good: {exc.errcode} {exc.errmsg}")
        return True
    return False


@job
def fetch_profile(openid: str) -> None:
    """Ask WeChat for the follower's profile. Since 2021-12-27 user/info gives
    no nickname or avatar to most accounts; we keep whatever does come."""
    try:
        info = wechat_client().user.get(openid)
    except WeChatClientException as exc:
        if _permanent(exc, f"profile of {openid}"):
            users.update_profile(openid)
            return
        raise
    users.update_profile(
        openid,
        nickname=info.get("nickname") or None,
        avatar_url=info.get("headimgurl") or None,
        unionid=info.get("unionid") or None,
    )


@job
def send_text(openid: str, text: str, fallback_template: dict | None = None) -> None:
    """A customer-service text; outside the 48 h window fall back to a
    template message when the caller gave one."""
    try:
        wechat_client().message.send_text(openid, text)
    except WeChatClientException as exc:
        if exc.errcode == OUT_OF_WINDOW and fallback_template:
            outbox.after_commit("wxbot.jobs.send_template", openid, *fallback_template_args(fallback_template))
            return
        if not _permanent(exc, f"text to {openid}"):
            raise


def fallback_template_args(template: dict) -> tuple:
    return template["template_id"], template["data"], template.get("url")


@job
def send_image(openid: str, media_key: str, path: str) -> None:
    media_id = media_id_for(media_key, path)
    try:
        wechat_client().message.send_image(openid, media_id)
    except WeChatClientException as exc:
        if not _permanent(exc, f"image to {openid}"):
            raise


@job
def send_template(openid: str, template_id: str, data: dict, url: str | None = None,
                  notification_id: int | None = None) -> None:
    """A template message; for a notification, once: its row records the
    sending, checked under the row's lock first."""
    if notification_id is not None and not notifications.claim_delivery(notification_id):
        log.info("notification %s: template already sent (or the notification is gone)", notification_id)
        return
    if notification_id is not None and _sent_before(notification_id):
        log.warning("notification %s: template sent by an attempt whose commit failed; not sent again",
                    notification_id)
        notifications.delivered(notification_id)
        return
    values = {k: (v if isinstance(v, dict) else {"value": v}) for k, v in data.items()}
    try:
        wechat_client().message.send_template(openid, template_id, values, url=url)
    except WeChatClientException as exc:
        if not _permanent(exc, f"template {template_id} to {openid}"):
            raise
        return
    if notification_id is not None:
        _remember_sent(notification_id)
        notifications.delivered(notification_id)


# A sent template message is also marked in Redis at once: should PostgreSQL
# fail between the send and the commit that records it, the retry finds the
# mark and does not send it again (WeChat's API takes no idempotency key).
SENT_MARK, SENT_MARK_TTL = "wx:template-sent:{}", 7 * 86400


def _sent_before(notification_id: int) -> bool:
    try:
        return bool(redis_store.conn.exists(SENT_MARK.format(notification_id)))
    except Exception as exc:  # noqa: BLE001 - without Redis the database's record alone decides
        log.warning("notification %s: sent-mark not readable (%s)", notification_id, exc)
        return False


def _remember_sent(notification_id: int) -> None:
    try:
        redis_store.conn.set(SENT_MARK.format(notification_id), b"1", ex=SENT_MARK_TTL)
    except Exception as exc:  # noqa: BLE001 - the database's record follows in the same job
        log.warning("notification %s: sent-mark not written (%s)", notification_id, exc)


def cached_media_id(media_key: str) -> str | None:
    cached = redis_store.conn.get(f"wechat:media:{media_key}")
    return cached.decode() if cached else None


def media_id_for(media_key: str, image: str | bytes) -> str:
    """Upload an image (a path, or PNG/JPEG bytes) once and reuse its media
    id while WeChat keeps it."""
    cached = cached_media_id(media_key)
    if cached:
        return cached
    content = image if isinstance(image, bytes) else Path(image).read_bytes()
    result = wechat_client().media.upload("image", ("image.png", io.BytesIO(content)))
    redis_store.conn.set(f"wechat:media:{media_key}", result["media_id"], ex=MEDIA_TTL)
    return result["media_id"]


@job
def fetch_profiles() -> None:
    """Profiles of new followers, up to 100 a call (``user/info/batchget``),
    then their distributors' new-member notices. A failure leaves them
    waiting: the row is retried, and any later batch takes them too."""
    users.profiles_started()
    openids = users.awaiting_profile()
    if not openids:
        return
    referrals.notify_new_members(users.fill_profiles(_profiles_of(openids)))
    if len(openids) == users.PROFILE_BATCH:  # more may wait
        outbox.after_commit("wxbot.jobs.fetch_profiles")


def _profiles_of(openids: list[str]) -> dict[str, dict]:
    try:
        listed = wechat_client().user.get_batch(openids)
    except WeChatClientException as exc:
        if exc.errcode not in PERMANENT:
            raise
        # One bad openid refuses the whole call: ask one by one.
        log.warning("profile batch refused (%s %s): asking one by one", exc.errcode, exc.errmsg)
        return {openid: _profile_of(openid) for openid in openids}
    found = {info.get("openid"): info for info in listed}
    return {openid: found.get(openid, {}) for openid in openids}


def _profile_of(openid: str) -> dict:
    try:
        return wechat_client().user.get(openid)
    except WeChatClientException as exc:
        if _permanent(exc, f"profile of {openid}"):
            return {}
        raise
