"""The merchant's catalogue and each unit's selection from it.

Every change a person makes (the admin's 商品 pages, ``flask products``)
goes through ``add_product`` / ``update_product``, which check the fields,
store new pictures (handlers.media) and write the audit row in the same
transaction."""
from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from models import Order, OrderLine, OrderStatus, Product, Unit, UnitProduct, db

from . import audit, media, rules
from .audit import Actor
from .errors import Conflict, DomainError, NotFound

MAX_NAME = 64
MAX_DESCRIPTION = 2000
MAX_PRICE_FEN = 10**8  # ¥1,000,000
MAX_STOCK = 10**7
MAX_SORT = 10**6
MAX_PICTURES = 9
FORM_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
PERCENT = re.compile(r"^([0-9]{1,3})(?:\.([0-9]{1,2}))?$")
# What the audit log's before/after shows of a product.
FIELDS = ("name", "description", "price_fen", "stock", "on_sale", "sort_order", "level1_rate_bp",
          "level2_rate_bp", "images")
# Paid units: what counts as sold (a refund in progress still counts until it is done).
SOLD_STATES = (OrderStatus.PAID.value, OrderStatus.SHIPPED.value, OrderStatus.COMPLETED.value,
               OrderStatus.REFUNDING.value)


class StockMoved(Conflict):
    """Orders changed the stock while the form that edits it was open."""


def percent(rate_bp: int) -> str:
    """1500 → "15%", 1550 → "15.5%" (basis points for people)."""
    return f"{rate_bp // 100}{f'.{rate_bp % 100:02d}'.rstrip('0') if rate_bp % 100 else ''}%"


def percent_text(rate_bp: int | None) -> str:
    """For a form field: 1550 → "15.5", None → ""."""
    return "" if rate_bp is None else percent(rate_bp)[:-1]


def to_bp(text: str | None, label: str = "佣金比例") -> int | None:
    """ "15.5" (or "15.5%") → 1550 basis points, exactly; empty → None (the shop's default)."""
    text = unicodedata.normalize("NFKC", text or "").strip().rstrip("%").strip()
    if not text:
        return None
    match = PERCENT.match(text)
    if not match:
        raise DomainError(f"{label}请填写 0-100 之间的百分数，最多两位小数（如 12.5），留空用默认比例")
    return int(match.group(1)) * 100 + int((match.group(2) or "").ljust(2, "0"))


def to_count(text: str | None, label: str) -> int:
    """A whole number typed by a person ("１２" from a Chinese keyboard counts)."""
    text = unicodedata.normalize("NFKC", text or "").strip()
    if not re.fullmatch(r"-?[0-9]{1,12}", text):
        raise DomainError(f"{label}请填写整数")
    return int(text)


def new_form_key() -> str:
    """The new-product form's one-time key (``add_product``'s ``form_key``)."""
    return secrets.token_urlsafe(16)


def _check(name: str, price_fen: int, stock: int, level1_rate_bp: int | None, level2_rate_bp: int | None,
           description: str = "", sort_order: int = 0) -> None:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        raise DomainError(f"商品名称需 1-{MAX_NAME} 个字")
    if not isinstance(description, str) or len(description.strip()) > MAX_DESCRIPTION:
        raise DomainError(f"商品描述最多 {MAX_DESCRIPTION} 个字")
    if not _whole(price_fen) or not 1 <= price_fen <= MAX_PRICE_FEN:
        raise DomainError("价格需在 0.01 元到 100 万元之间")
    if not _whole(stock) or not 0 <= stock <= MAX_STOCK:
        raise DomainError("库存需为 0 到 1000 万之间的整数")
    if not _whole(sort_order) or not 0 <= sort_order <= MAX_SORT:
        raise DomainError("排序需为 0 到 100 万之间的整数（小的在前）")
    for rate in (level1_rate_bp, level2_rate_bp):
        if rate is not None and (not _whole(rate) or not 0 <= rate <= 10000):
            raise DomainError("佣金比例需在 0%-100% 之间（0-10000 基点）")
    # What the product will really pay: its own rates, else the merchant's
    # defaults — now and under every scheduled rule version.
    rules.check_product_rates(level1_rate_bp, level2_rate_bp)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pictures(uploads: Sequence[bytes]) -> list[media.Picture]:
    """Every upload checked and re-encoded before anything is stored: one bad
    picture refuses the whole save, with nothing written."""
    many = len(uploads) > 1
    return [media.prepare(data, f"第 {i} 张图片" if many else "图片") for i, data in enumerate(uploads, 1)]


def _store(pictures: list[media.Picture]) -> list[str]:
    return [media.store(p) for p in pictures]


def _count_pictures(images: list[str]) -> list[str]:
    unique = list(dict.fromkeys(images))  # the same picture uploaded twice is shown once
    if len(unique) > MAX_PICTURES:
        raise DomainError(f"每个商品最多 {MAX_PICTURES} 张图片")
    return unique


def add_product(name: str, price_fen: int, stock: int, description: str = "", images: list[str] | None = None,
                on_sale: bool = True, level1_rate_bp: int | None = None, level2_rate_bp: int | None = None,
                *, sort_order: int = 0, pictures: Sequence[bytes] = (), form_key: str | None = None,
                actor: Actor = audit.SYSTEM) -> Product:
    """A new product. ``images`` are URLs kept as given (seeds, the CLI);
    ``pictures`` are uploads, checked and stored (handlers.media), after them.
    With ``form_key`` (the admin form's one-time key, unique on products) the
    form submitted twice — one after the other or both at once — is one
    product: the second submit gets the first back. The default actor is the
    system, for seeds and tests; the admin and the CLI always say who acts."""
    if form_key is not None:
        if not FORM_KEY.match(form_key):
            raise DomainError("页面已过期，请刷新后再提交")
        earlier = _created_with(form_key)
        if earlier is not None:
            return earlier
    description = description or ""
    _check(name, price_fen, stock, level1_rate_bp, level2_rate_bp, description, sort_order)
    checked = _pictures(pictures)
    all_images = _count_pictures(list(images or []) + [p.url for p in checked])
    _store(checked)
    product = Product(name=name.strip(), price_fen=price_fen, stock=stock, description=description.strip(),
                      images=all_images, on_sale=bool(on_sale), level1_rate_bp=level1_rate_bp,
                      level2_rate_bp=level2_rate_bp, sort_order=sort_order, create_key=form_key)
    try:
        with db.session.begin_nested():
            db.session.add(product)
    except IntegrityError:
        # The database's word on the key: the other submit won; its product is this one.
        earlier = _created_with(form_key) if form_key is not None else None
        if earlier is None:
            raise
        return earlier
    audit.record(actor, "product.create", "product", product.id, after=audit.snapshot(product, FIELDS))
    return product


def _created_with(form_key: str) -> Product | None:
    return db.session.scalars(select(Product).where(Product.create_key == form_key)).one_or_none()


def update_product(product_id: int, *, actor: Actor, pictures: Sequence[bytes] = (),
                   remove_images: Sequence[str] = (), cover: str | None = None, stock_seen: int | None = None,
                   reason: str = "", **changes: Any) -> Product:
    """Change some of a product's fields (``name``, ``description``,
    ``price_fen``, ``stock``, ``on_sale``, ``sort_order``, the rates; a rate of
    None is the shop's default), add ``pictures`` (uploads), remove pictures
    by URL, make one the ``cover``. Only what really changes is written and
    audited: "product.update" with before/after of those fields, and
    "product.shelve" / "product.unshelve" when it goes on or off the shelf.

    Orders take stock while a form is open: ``stock_seen`` is the stock the
    form showed. The same number submitted means the stock was not edited
    (the orders' count stands); a new number while orders moved it is refused
    rather than silently undoing their reservations."""
    unknown = set(changes) - set(FIELDS) | ({"images"} & set(changes))
    if unknown:
        raise TypeError(f"update_product: unknown field(s) {sorted(unknown)}")
    product = get_product(product_id, lock=True)
    if stock_seen is not None and "stock" in changes:
        if changes["stock"] == stock_seen:
            del changes["stock"]
        elif product.stock != stock_seen and changes["stock"] != product.stock:
            raise StockMoved(f"保存前库存已被新订单改为 {product.stock}，请核对后重新填写库存")
    merged = {k: getattr(product, k) for k in ("name", "price_fen", "stock", "level1_rate_bp", "level2_rate_bp",
                                               "description", "sort_order")}
    merged.update({k: v for k, v in changes.items() if k in merged})
    merged["description"] = merged["description"] or ""
    _check(**merged)
    wanted = dict(changes)
    for key in ("name", "description"):
        if key in wanted:
            wanted[key] = (wanted[key] or "").strip()
    if "on_sale" in wanted:
        wanted["on_sale"] = bool(wanted["on_sale"])
    images = _new_images(product, pictures, remove_images, cover)
    if images is not None:
        wanted["images"] = images
    changed = {k: v for k, v in wanted.items() if getattr(product, k) != v}
    shelf = changed.pop("on_sale", None)
    if changed:
        before = audit.snapshot(product, changed)
        for key, value in changed.items():
            setattr(product, key, value)
        audit.record(actor, "product.update", "product", product.id, before=before,
                     after=audit.snapshot(product, changed), reason=reason)
    if shelf is not None:
        product.on_sale = shelf
        audit.record(actor, "product.shelve" if shelf else "product.unshelve", "product", product.id,
                     before={"on_sale": not shelf}, after={"on_sale": shelf}, reason=reason)
    db.session.flush()
    return product


def _new_images(product: Product, uploads: Sequence[bytes], remove: Sequence[str],
                cover: str | None) -> list[str] | None:
    """The product's picture list after an edit, or None when it stays."""
    if not uploads and not remove and not cover:
        return None
    current = list(product.images or [])
    if cover in remove:
        cover = None  # the cover was removed: the next picture becomes the cover
    stray = [url for url in remove if url not in current]
    if stray:
        raise Conflict("要删除的图片已不在这个商品上，请刷新页面后重试")
    kept = [url for url in current if url not in set(remove)]
    checked = _pictures(uploads)
    images = _count_pictures(kept + [p.url for p in checked])
    if cover:
        if cover not in images:
            raise Conflict("选作封面的图片已不在这个商品上，请刷新页面后重试")
        images.remove(cover)
        images.insert(0, cover)
    _store(checked)
    return images


def set_on_sale(product_id: int, on_sale: bool, *, actor: Actor) -> Product:
    """On or off the shelf; asking for the state it is in changes nothing (a double click)."""
    return update_product(product_id, on_sale=bool(on_sale), actor=actor)


def set_sort_order(product_id: int, sort_order: int, *, actor: Actor) -> Product:
    return update_product(product_id, sort_order=sort_order, actor=actor)


def get_product(product_id: int, lock: bool = False) -> Product:
    if lock:
        product = db.session.scalars(select(Product).where(Product.id == product_id).with_for_update()
                                     .execution_options(populate_existing=True)).one_or_none()
    else:
        product = db.session.get(Product, product_id)
    if product is None:
        raise NotFound("商品不存在")
    return product


def all_products() -> list[Product]:
    return list(db.session.scalars(select(Product).order_by(Product.id)))


def on_sale() -> list[Product]:
    """What the shop shows, in the merchant's display order (smaller first), then the older first."""
    return list(db.session.scalars(select(Product).where(Product.on_sale.is_(True))
                                   .order_by(Product.sort_order, Product.id)))


def products_page(*, shelf: str | None = None, search: str | None = None, before_id: int | None = None,
                  limit: int = 50) -> list[Product]:
    """The admin's list: newest first, keyset-paginated by id (``limit + 1``
    rows: the extra one says a next page exists). ``shelf`` is "on" or "off";
    ``search`` finds a name containing it."""
    query = select(Product).order_by(Product.id.desc()).limit(limit + 1)
    if shelf in ("on", "off"):
        query = query.where(Product.on_sale.is_(shelf == "on"))
    if search:
        query = query.where(Product.name.icontains(search.strip()[:MAX_NAME], autoescape=True))
    if before_id:
        query = query.where(Product.id < before_id)
    return list(db.session.scalars(query))


def sold_counts(product_ids: Sequence[int]) -> dict[int, int]:
    """Units sold (paid, not refunded) of each product."""
    if not product_ids:
        return {}
    rows = db.session.execute(
        select(OrderLine.product_id, func.sum(OrderLine.quantity)).join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.product_id.in_(list(product_ids)), Order.status.in_(SOLD_STATES))
        .group_by(OrderLine.product_id))
    return {pid: int(total or 0) for pid, total in rows}


def selection_ids(unit: Unit) -> set[int]:
    return set(db.session.scalars(select(UnitProduct.product_id).where(UnitProduct.unit_id == unit.id)))


def unit_products(unit: Unit) -> list[Product]:
    """What the unit's shop shows: the distributor's choice, else everything on sale."""
    chosen = selection_ids(unit)
    return [p for p in on_sale() if not chosen or p.id in chosen]


def choose_products(unit: Unit, product_ids: list[int]) -> list[Product]:
    """Replace the unit's selection; an empty choice shows the whole catalogue."""
    wanted = {int(i) for i in product_ids}
    known = {p.id for p in on_sale()}
    if wanted - known:
        raise DomainError("所选商品不存在或已下架")
    db.session.execute(delete(UnitProduct).where(UnitProduct.unit_id == unit.id))
    db.session.add_all(UnitProduct(unit_id=unit.id, product_id=i) for i in sorted(wanted))
    db.session.flush()
    return unit_products(unit)


TRYOUT_CATALOGUE = [
    ("山茶花洗护礼盒", 16800, 120, "山茶花籽油洗发露 400ml + 护发素 400ml，温和不刺激，送礼自用两相宜。", "camellia", (1500, 600)),
    ("云南小粒咖啡豆 500g", 8900, 200, "保山高海拔阿拉比卡，中度烘焙，坚果与焦糖风味，现烘现发。", "coffee", (None, None)),
    ("有机红枣 1kg", 5900, 300, "新疆若羌灰枣，自然晾晒，个大肉厚，可直接吃可煲汤。", "dates", (None, None)),
    ("竹纤维洗碗布（10 片）", 1990, 500, "竹纤维材质不沾油，吸水快干，厨房好帮手。", "cloth", (800, 300)),
    ("手工红糖姜茶 12 袋", 3900, 250, "古法熬制老红糖配小黄姜，暖身暖胃，冬季必备。", "tea", (None, None)),
    ("保温焖烧杯 500ml", 12900, 80, "316 不锈钢内胆，6 小时保温，早晨放料中午就能吃。", "cup", (None, None)),
]


def seed_tryout_catalogue() -> int:
    """A small believable catalogue for a first run; nothing when products exist."""
    if db.session.scalar(select(Product.id).limit(1)) is not None:
        return 0
    for name, price, stock, text, image, (l1, l2) in TRYOUT_CATALOGUE:
        add_product(name, price, stock, text, [f"/h5/static/products/{image}.png"], level1_rate_bp=l1,
                    level2_rate_bp=l2)
    return len(TRYOUT_CATALOGUE)
