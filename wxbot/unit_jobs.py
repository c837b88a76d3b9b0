"""Background work for distributors' units: the permanent parametric QR code
(``QR_LIMIT_STR_SCENE``), the poster drawn around it, and sending it."""
from __future__ import annotations

import logging

import requests
from wechatpy.exceptions import WeChatClientException

from handlers import outbox, poster, units
from models import QRStatus, Unit

from .client import wechat_client
from .jobs import _permanent, cached_media_id, job, media_id_for

log = logging.getLogger(__name__)
AVATAR_TIMEOUT = 5


def poster_media_key(unit: Unit) -> str:
    return f"poster-{unit.id}-v{unit.poster_version}"


def poster_media_id(unit: Unit) -> str | None:
    """The poster's media id while WeChat still keeps the upload."""
    return cached_media_id(poster_media_key(unit)) if unit.poster_version else None


def make_qr_and_poster(unit_id: int) -> None:
    """Make the unit's QR code, then its poster. Raising retries the outbox row;
    ``flask --app wsgi units prepare`` re-queues any unit still missing one."""
    unit = units.get_unit(unit_id)
    if unit.is_merchant:
        return
    if unit.qr_status != QRStatus.READY.value:
        result = wechat_client().qrcode.create({
            "action_name": "QR_LIMIT_STR_SCENE",
            "action_info": {"scene": {"scene_str": unit.scene}},
        })
        units.qr_created(unit.id, result["ticket"], result["url"])
        outbox.commit()  # keep the code even if drawing the poster fails below
        unit = units.get_unit(unit_id)
    render_poster(unit)


prepare_unit = job(make_qr_and_poster)


def render_poster(unit: Unit) -> None:
    user = unit.distributor.user
    png = poster.render(unit.qr_url, user.display_name, unit.name, unit.invite_code, fetch_avatar(user.avatar_url))
    units.poster_rendered(unit.id, png)


def fetch_avatar(url: str | None) -> bytes | None:
    if not url:
        return None
    try:
        res = requests.get(url, timeout=AVATAR_TIMEOUT)
    except requests.RequestException as exc:
        log.warning("avatar %s unavailable: %s", url, exc)
        return None
    return res.content if res.ok and len(res.content) <= poster.MAX_AVATAR_BYTES else None


@job
def send_poster(openid: str, unit_id: int) -> None:
    """The poster as a customer-service image message (uploaded once)."""
    unit = units.get_unit(unit_id)
    if not unit.poster_version:
        make_qr_and_poster(unit_id)
        outbox.commit()
        unit = units.get_unit(unit_id)
    media_id = media_id_for(poster_media_key(unit), unit.poster_png)
    try:
        wechat_client().message.send_image(openid, media_id)
    except WeChatClientException as exc:
        if not _permanent(exc, f"poster to {openid}"):
            raise
