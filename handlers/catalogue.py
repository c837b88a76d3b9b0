"""The merchant's catalogue and each unit's selection from it."""
from __future__ import annotations

from sqlalchemy import delete, select

from models import Product, Unit, UnitProduct, db

from . import settings
from .errors import DomainError, NotFound

MAX_NAME = 64
MAX_PRICE_FEN = 10**8  # ¥1,000,000


def percent(rate_bp: int) -> str:
    """1500 → "15%", 1550 → "15.5%" (basis points for people)."""
    return f"{rate_bp // 100}{f'.{rate_bp % 100:02d}'.rstrip('0') if rate_bp % 100 else ''}%"


def _check(name: str, price_fen: int, stock: int, level1_rate_bp: int | None, level2_rate_bp: int | None) -> None:
    if not 1 <= len(name.strip()) <= MAX_NAME:
        raise DomainError(f"商品名称需 1-{MAX_NAME} 个字")
    if not _whole(price_fen) or not 1 <= price_fen <= MAX_PRICE_FEN:
        raise DomainError("价格需为 1 分到 100 万元之间的整数（单位：分）")
    if not _whole(stock) or not 0 <= stock <= 10**7:
        raise DomainError("库存需为 0 到 1000 万之间的整数")
    for rate in (level1_rate_bp, level2_rate_bp):
        if rate is not None and (not _whole(rate) or not 0 <= rate <= 10000):
            raise DomainError("佣金比例需在 0-10000 基点之间（1000 = 10%）")
    # What the product will really pay: its own rates, else the merchant's defaults.
    rules = settings.section("distribution")
    level1 = rules["level1_rate_bp"] if level1_rate_bp is None else level1_rate_bp
    level2 = rules["level2_rate_bp"] if level2_rate_bp is None else level2_rate_bp
    if level1 + level2 > rules["max_total_rate_bp"]:
        raise DomainError(f"一级佣金 {percent(level1)} + 二级佣金 {percent(level2)} = {percent(level1 + level2)}，"
                          f"超过两级佣金合计上限 {percent(rules['max_total_rate_bp'])}")


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def add_product(name: str, price_fen: int, stock: int, description: str = "", images: list[str] | None = None,
                on_sale: bool = True, level1_rate_bp: int | None = None,
                level2_rate_bp: int | None = None) -> Product:
    _check(name, price_fen, stock, level1_rate_bp, level2_rate_bp)
    product = Product(name=name.strip(), price_fen=price_fen, stock=stock, description=description.strip(),
                      images=list(images or []), on_sale=on_sale, level1_rate_bp=level1_rate_bp,
                      level2_rate_bp=level2_rate_bp)
    db.session.add(product)
    db.session.flush()
    return product


def update_product(product_id: int, **changes) -> Product:
    product = get_product(product_id)
    merged = {k: getattr(product, k) for k in ("name", "price_fen", "stock", "level1_rate_bp", "level2_rate_bp")}
    merged.update({k: v for k, v in changes.items() if k in merged})
    _check(**merged)
    for key, value in changes.items():
        setattr(product, key, value)
    return product


def get_product(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None:
        raise NotFound("商品不存在")
    return product


def all_products() -> list[Product]:
    return list(db.session.scalars(select(Product).order_by(Product.id)))


def on_sale() -> list[Product]:
    return list(db.session.scalars(select(Product).where(Product.on_sale.is_(True)).order_by(Product.id)))


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
