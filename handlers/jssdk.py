"""Sharing through WeChat's JS-SDK (PRODUCT.md flow 12): what a page shares,
and the signature ``wx.config`` needs.

The link a page shares is always a unit's: a distributor sharing any page
shares their own shop (so whatever they pass on earns for them); anyone
else shares the unit the page belongs to. Whoever opens it lands in that
unit and is attributed by first touch, like a QR scan.
"""
from __future__ import annotations

from wechatpy.client.api import WeChatJSAPI

from models import Distributor, Product, Unit, User

from . import catalogue, referrals, settings
from .money import yuan

JS_API_LIST = ("updateAppMessageShareData", "updateTimelineShareData")


def sign(ticket: str, nonce: str, timestamp: int, url: str) -> str:
    """sha1 of ``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` (PROTOCOLS.md),
    for the page's full address without its ``#`` fragment."""
    return WeChatJSAPI().get_jsapi_signature(nonce, ticket, timestamp, url.split("#", 1)[0])


def sharer_unit(viewer: User | None, page_unit: Unit) -> Unit:
    """The unit a shared link carries: the viewer's own when they are an
    active distributor, else the page's."""
    mine = referrals.distributor_of(viewer.id) if viewer is not None else None
    return mine.unit if mine is not None and mine.is_active else page_unit


def unit_link(unit: Unit) -> str:
    return settings.page_url(f"u/{unit.slug}")


def product_link(unit: Unit, product: Product) -> str:
    return settings.page_url(f"u/{unit.slug}/p/{product.id}")


def _owner(unit: Unit) -> User | None:
    distributor: Distributor | None = unit.distributor
    return distributor.user if distributor else None


def _picture(path: str | None) -> str:
    if not path:
        return ""
    return path if path.startswith(("http://", "https://")) else settings.base_url() + path


def unit_share(unit: Unit, products: list[Product] | None = None) -> dict[str, str]:
    """Title, description, picture and link of a unit's shop, as WeChat's
    share card shows them."""
    if products is None:
        products = catalogue.unit_products(unit)
    owner = _owner(unit)
    cover = products[0].cover if products else None
    return {"title": unit.name,
            "desc": f"{owner.display_name} 为你推荐 {len(products)} 件好物" if owner else "品牌官方商城",
            "link": unit_link(unit),
            "imgUrl": (owner.avatar_url if owner and owner.avatar_url else None) or _picture(cover)}


def product_share(unit: Unit, product: Product) -> dict[str, str]:
    owner = _owner(unit)
    return {"title": product.name,
            "desc": f"¥{yuan(product.price_fen)} · " + (f"{owner.display_name} 推荐" if owner else "品牌官方商城"),
            "link": product_link(unit, product),
            "imgUrl": _picture(product.cover) or (owner.avatar_url if owner and owner.avatar_url else "")}
