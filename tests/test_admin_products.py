"""The admin's 商品 pages (issue 10, items 4, 5, 9, 10): create and edit
products with pictures, on and off the shelf, display order, per-product
rates; pictures checked by decoding, turned upright, stripped, shrunk and
served from the media folder; bad input refused with nothing saved; every
change audited."""
from __future__ import annotations

import io
import re
import struct
import threading
import zlib

import pytest
import requests
from PIL import Image
from sqlalchemy import func, select

from admin_helpers import make_staff, post, staff_browser, token  # noqa: F401
from app.config import build
from conftest import needs_postgres
from handlers import audit, catalogue, orders, outbox
from models import AuditEntry, Product, db
from test_shop_pages import PHONE

MB = 1024 * 1024


# -- pictures made here, with Pillow ------------------------------------------------

def jpeg_photo(width=2000, height=1500, orientation=6) -> bytes:
    """A camera photo: EXIF with an orientation (6: the camera was turned; show it rotated
    90° clockwise), a camera model and a GPS position."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 2, height // 4))  # a blue band top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x0110] = "FenxiaoCam X1"
    exif[0x8825] = {1: "N", 2: (30.0, 15.0, 0.0)}  # GPS: where it was taken
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif, quality=90)
    return out.getvalue()


def png_picture(width=1500, height=1200, transparent=True) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 160, 0, 255))
    if transparent:
        image.paste((0, 0, 0, 0), (0, 0, width // 3, height // 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` × ``height`` pixels: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


# -- fixtures and helpers -----------------------------------------------------------

@pytest.fixture
def media(app, settings, tmp_path):
    """Uploaded pictures go to a folder of this test's own ([admin] media_dir)."""
    raw = {section: dict(values) for section, values in settings.items()}
    raw["admin"]["media_dir"] = str(tmp_path / "media")
    app.config["SETTINGS"] = build(raw, {}, "tests")
    yield tmp_path / "media"
    app.config["SETTINGS"] = settings


@pytest.fixture
def owner(staff_browser, media):
    return staff_browser("owner")


def form_of(page: str) -> dict[str, str]:
    found = {"csrf_token": token(page)}
    key = re.search(r'name="form_key" value="([^"]+)"', page)
    if key:
        found["form_key"] = key.group(1)
    seen = re.search(r'name="stock_seen" value="([^"]*)"', page)
    if seen:
        found["stock_seen"] = seen.group(1)
    return found


FIELDS = {"name": "山茶花洗护礼盒", "description": "山茶花籽油洗发露 400ml\n护发素 400ml", "price": "168.00",
          "stock": "120", "sort_order": "5", "level1": "15", "level2": "6.5", "on_sale": "1"}


def submit_new(browser, base, files=(), **fields) -> requests.Response:
    page = browser.get(f"{base}/admin/products/new")
    assert page.status_code == 200, page.text
    data = {**form_of(page.text), **FIELDS, **fields}
    return browser.post(f"{base}/admin/products/new", data=data, files=list(files) or [("pictures", ("", b""))],
                        allow_redirects=False)


def submit_edit(browser, base, product_id, files=(), extra=(), **fields) -> requests.Response:
    page = browser.get(f"{base}/admin/products/{product_id}")
    assert page.status_code == 200, page.text
    p = fresh(product_id)
    current = {"name": p.name, "description": p.description, "price": f"{p.price_fen / 100:.2f}",
               "stock": str(p.stock), "sort_order": str(p.sort_order),
               "level1": catalogue.percent_text(p.level1_rate_bp), "level2": catalogue.percent_text(p.level2_rate_bp),
               "on_sale": "1" if p.on_sale else ""}
    data = list({**form_of(page.text), **current, **fields}.items()) + list(extra)
    return browser.post(f"{base}/admin/products/{product_id}", data=data,
                        files=list(files) or [("pictures", ("", b""))], allow_redirects=False)


def fresh(product_id: int) -> Product:
    db.session.rollback()
    return db.session.get(Product, product_id)


def product_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count(Product.id)))


def entries(action: str) -> list[AuditEntry]:
    db.session.rollback()
    return list(db.session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def seeded(name="竹纤维洗碗布", price=1990, stock=10, **kw) -> Product:
    p = catalogue.add_product(name, price, stock, **kw)
    outbox.commit()
    return p


# -- create, with pictures ------------------------------------------------------------

def test_create_with_a_jpeg_photo_and_a_png_the_pictures_are_upright_small_stripped_and_served(
        app, base, owner, media):
    res = submit_new(owner, base, files=[("pictures", ("photo.jpg", jpeg_photo(), "image/jpeg")),
                                          ("pictures", ("logo.png", png_picture(), "image/png"))])
    assert res.status_code == 302, res.text
    product = db.session.scalars(select(Product)).one()
    assert res.headers["Location"].endswith(f"/admin/products/{product.id}")
    assert (product.name, product.price_fen, product.stock, product.sort_order) == ("山茶花洗护礼盒", 16800, 120, 5)
    assert (product.level1_rate_bp, product.level2_rate_bp, product.on_sale) == (1500, 650, True)
    assert product.description == "山茶花籽油洗发露 400ml\n护发素 400ml"  # the textarea's line break kept
    assert len(product.images) == 2 and all(re.fullmatch(r"/media/[0-9a-f]{32}\.(jpg|png)", u) for u in product.images)
    assert "已保存商品" in owner.get(f"{base}{res.headers['Location']}").text

    photo = requests.get(f"{base}{product.images[0]}")
    assert photo.status_code == 200 and photo.headers["Content-Type"] == "image/jpeg"
    assert "immutable" in photo.headers["Cache-Control"] and "max-age=31536000" in photo.headers["Cache-Control"]
    again = requests.get(f"{base}{product.images[0]}", headers={"If-None-Match": photo.headers["ETag"]})
    assert again.status_code == 304 and not again.content
    shown = Image.open(io.BytesIO(photo.content))
    assert shown.format == "JPEG" and shown.size == (810, 1080)  # turned upright (was 2000×1500 lying down)
    assert not shown.getexif() and "exif" not in shown.info  # no camera, no GPS, no orientation left
    assert shown.getpixel((800, 10))[2] > 150  # the blue band, top-left before turning, is now top-right

    logo = requests.get(f"{base}{product.images[1]}")
    assert logo.headers["Content-Type"] == "image/png"
    kept = Image.open(io.BytesIO(logo.content))
    assert kept.format == "PNG" and kept.mode == "RGBA" and kept.size == (1080, 864)  # transparency kept
    assert kept.getpixel((5, 5))[3] == 0
    assert sorted(p.name for p in media.iterdir()) == sorted(u.rsplit("/", 1)[1] for u in product.images)

    created = entries("product.create")
    assert len(created) == 1 and created[0].actor == owner.staff_name and created[0].target_id == str(product.id)
    assert created[0].after["price_fen"] == 16800 and created[0].after["images"] == product.images
    shop = requests.get(f"{base}/h5/p/{product.id}", headers={"User-Agent": PHONE})
    assert shop.status_code == 200 and product.images[0] in shop.text


def test_a_picture_without_transparency_becomes_a_jpeg_and_one_picture_twice_is_one_file(app, base, owner, media):
    flat = png_picture(400, 300, transparent=False)
    res = submit_new(owner, base, files=[("pictures", ("a.png", flat, "image/png")),
                                          ("pictures", ("b.png", flat, "image/png"))])
    assert res.status_code == 302, res.text
    product = db.session.scalars(select(Product)).one()
    assert len(product.images) == 1 and product.images[0].endswith(".jpg")
    assert Image.open(io.BytesIO(requests.get(f"{base}{product.images[0]}").content)).size == (400, 300)


def _encoded(kind: str, size=(1600, 900), **options) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (250, 200, 0)).save(out, kind, **options)
    return out.getvalue()


@pytest.mark.parametrize("name, data, stored", [
    ("a.webp", _encoded("WEBP"), "jpg"),
    ("a.gif", _encoded("GIF"), "jpg"),
    ("a.jpg", _encoded("JPEG", (1080, 100)), "jpg"),  # already small enough: re-encoded all the same
])
def test_webp_and_gif_are_taken_too(app, base, owner, media, name, data, stored):
    res = submit_new(owner, base, files=[("pictures", (name, data, "application/octet-stream"))])
    assert res.status_code == 302, res.text
    [url] = db.session.scalars(select(Product)).one().images
    assert url.endswith("." + stored)
    assert max(Image.open(io.BytesIO(requests.get(f"{base}{url}").content)).size) == 1080


def test_at_most_nine_pictures(app, base, owner, media):
    files = [("pictures", (f"{i}.jpg", _encoded("JPEG", (50 + i, 50)), "image/jpeg")) for i in range(10)]
    res = submit_new(owner, base, files=files)
    assert res.status_code == 400 and "每个商品最多 9 张图片" in res.text
    assert product_count() == 0 and not media.exists()


def test_media_serves_only_its_own_files(app, base, media):
    for name in ("../../etc/passwd", "..%2F..%2Fconfig.toml", "x.jpg", "0" * 32 + ".gif", "0" * 32 + ".jpg"):
        res = requests.get(f"{base}/media/{name}")
        assert res.status_code == 404, name


# -- editing ----------------------------------------------------------------------

def test_edit_changes_only_what_changed_and_audits_before_and_after(app, base, owner):
    p = seeded(level1_rate_bp=1500)
    res = submit_edit(owner, base, p.id, name="竹纤维洗碗布（20 片）", price="29.90", level1="", level2="8")
    assert res.status_code == 302, res.text
    p = fresh(p.id)
    assert (p.name, p.price_fen, p.level1_rate_bp, p.level2_rate_bp, p.stock) == \
        ("竹纤维洗碗布（20 片）", 2990, None, 800, 10)
    [entry] = entries("product.update")
    assert entry.actor == owner.staff_name and entry.target_type == "product" and entry.target_id == str(p.id)
    assert entry.before == {"name": "竹纤维洗碗布", "price_fen": 1990, "level1_rate_bp": 1500, "level2_rate_bp": None}
    assert entry.after == {"name": "竹纤维洗碗布（20 片）", "price_fen": 2990, "level1_rate_bp": None,
                           "level2_rate_bp": 800}
    # The same form again changes nothing and writes no audit row; unticking 上架 takes it off the shelf.
    assert submit_edit(owner, base, p.id).status_code == 302
    assert len(entries("product.update")) == 1
    assert submit_edit(owner, base, p.id, on_sale="").status_code == 302
    assert fresh(p.id).on_sale is False and len(entries("product.unshelve")) == 1


def test_pictures_are_added_removed_and_one_made_the_cover(app, base, owner, media):
    p = seeded(images=["/h5/static/products/cloth.png"])
    res = submit_edit(owner, base, p.id, files=[("pictures", ("a.jpg", jpeg_photo(300, 200, 1), "image/jpeg"))])
    assert res.status_code == 302, res.text
    first, added = fresh(p.id).images
    assert first == "/h5/static/products/cloth.png" and added.startswith("/media/")
    res = submit_edit(owner, base, p.id, cover=added, extra=[("remove", first)])
    assert res.status_code == 302, res.text
    assert fresh(p.id).images == [added]
    before, after = entries("product.update")[-1].before, entries("product.update")[-1].after
    assert before == {"images": [first, added]} and after == {"images": [added]}
    page = owner.get(f"{base}/admin/products/{p.id}").text
    assert added in page and first not in page
    # Removing a picture that is no longer there (another tab removed it): a clear message, nothing changes.
    res = submit_edit(owner, base, p.id, extra=[("remove", first)])
    assert res.status_code == 409 and "已不在这个商品上" in res.text
    assert fresh(p.id).images == [added]


def test_the_stock_orders_took_while_the_form_was_open_is_not_undone(app, base, owner):
    from distribution_helpers import make_user

    p = seeded(stock=10)
    page = owner.get(f"{base}/admin/products/{p.id}").text
    orders.place_order(orders.Buyer(user=make_user()), {p.id: 1},
                       orders.Receiver.checked("张三", "13800138000", "上海市徐汇区漕溪北路 1 号"))
    outbox.commit()
    assert fresh(p.id).stock == 9
    base_form = {**form_of(page), **{k: v for k, v in FIELDS.items()}, "name": p.name, "price": "19.90",
                 "level1": "", "level2": ""}
    # Saved with the stock as the form showed it: the stock stays what the order left.
    res = owner.post(f"{base}/admin/products/{p.id}", data={**base_form, "stock": "10"}, allow_redirects=False)
    assert res.status_code == 302, res.text
    assert fresh(p.id).stock == 9
    # A new number while orders moved it: refused, the form shows today's stock; sending it again sets it.
    res = owner.post(f"{base}/admin/products/{p.id}", data={**base_form, "stock": "50"}, allow_redirects=False)
    assert res.status_code == 409 and "库存已被新订单改为 9" in res.text
    assert fresh(p.id).stock == 9
    again = {**form_of(res.text), **base_form, "stock_seen": form_of(res.text)["stock_seen"], "stock": "50"}
    assert owner.post(f"{base}/admin/products/{p.id}", data=again, allow_redirects=False).status_code == 302
    assert fresh(p.id).stock == 50


# -- the list: shelf and order ------------------------------------------------------

def test_list_filters_and_the_shelf_toggle_by_htmx_and_by_plain_form(app, base, owner):
    on = seeded("山茶花洗护礼盒", images=["/h5/static/products/camellia.png"])
    off = seeded("旧款红枣", on_sale=False)
    listing = owner.get(f"{base}/admin/products").text
    assert "山茶花洗护礼盒" in listing and "旧款红枣" in listing and "camellia.png" in listing
    assert "旧款红枣" not in owner.get(f"{base}/admin/products?shelf=on").text
    assert "山茶花" not in owner.get(f"{base}/admin/products?shelf=off").text
    assert "旧款红枣" not in owner.get(f"{base}/admin/products?q=山茶").text
    assert "没有符合条件的商品" in owner.get(f"{base}/admin/products?q=%25").text  # % is a character, not a wildcard

    res = post(owner, f"{base}/admin/products/{on.id}/shelf", {"on_sale": "0"}, htmx=True)
    assert res.status_code == 200 and f'id="product-{on.id}"' in res.text and "已下架" in res.text
    assert ">上架</button>" in res.text
    assert fresh(on.id).on_sale is False
    shop = requests.get(f"{base}/h5/shop", headers={"User-Agent": PHONE}).text
    assert "山茶花洗护礼盒" not in shop
    # A double click: the same state asked again changes nothing, one audit row.
    assert post(owner, f"{base}/admin/products/{on.id}/shelf", {"on_sale": "0"}, htmx=True).status_code == 200
    assert len(entries("product.unshelve")) == 1
    res = post(owner, f"{base}/admin/products/{off.id}/shelf", {"on_sale": "1", "back": "/admin/products?shelf=off"})
    assert res.status_code == 302 and res.headers["Location"].endswith("/admin/products?shelf=off")
    assert fresh(off.id).on_sale is True
    [shelved] = entries("product.shelve")
    assert shelved.before == {"on_sale": False} and shelved.after == {"on_sale": True}
    assert "旧款红枣" in requests.get(f"{base}/h5/shop", headers={"User-Agent": PHONE}).text
    res = post(owner, f"{base}/admin/products/{off.id}/shelf", {"on_sale": "maybe"}, htmx=True)
    assert res.status_code == 400 and "请选择上架或下架" in res.text
    res = post(owner, f"{base}/admin/products/{off.id}/shelf", {"on_sale": "0", "back": "https://evil.example/"})
    assert res.headers["Location"].endswith("/admin/products")  # never sent elsewhere


def test_the_shop_lists_products_in_the_display_order(app, base, owner):
    a, b, c = seeded("甲商品"), seeded("乙商品"), seeded("丙商品")

    def shop_order() -> list[str]:
        page = requests.get(f"{base}/h5/shop", headers={"User-Agent": PHONE}).text
        return sorted(("甲商品", "乙商品", "丙商品"), key=page.index)

    assert shop_order() == ["甲商品", "乙商品", "丙商品"]  # all 0: the older first
    for product, order in ((a, "30"), (b, "20"), (c, "10")):
        res = post(owner, f"{base}/admin/products/{product.id}/order", {"sort_order": order}, htmx=True)
        assert res.status_code == 200 and f'value="{order}"' in res.text
    assert shop_order() == ["丙商品", "乙商品", "甲商品"]
    assert [e.after for e in entries("product.update")] == [{"sort_order": 30}, {"sort_order": 20},
                                                            {"sort_order": 10}]
    for bad, message in (("-1", "排序需为 0 到 100 万"), ("abc", "排序请填写整数"), ("99999999", "排序需为 0 到 100 万")):
        res = post(owner, f"{base}/admin/products/{a.id}/order", {"sort_order": bad}, htmx=True)
        assert res.status_code == 400 and message in res.text, bad
    assert fresh(a.id).sort_order == 30


# -- bad input: a clear message, nothing saved --------------------------------------

@pytest.mark.parametrize("name, data, message", [
    ("notes.jpg", "这不是图片，只是改了扩展名的文本文件".encode() * 10, "不是可识别的图片"),
    ("cut.jpg", jpeg_photo(800, 600)[:3000], "已损坏或不完整"),
    ("cut.png", png_picture(600, 400)[:400], "已损坏或不完整"),
    ("bomb.png", png_claiming(100_000, 100_000), "尺寸过大"),
    ("big.png", png_claiming(8000, 8000), "尺寸过大"),  # 64 MP: under Pillow's own limit, over ours
    ("empty.jpg", b"", "空文件"),
    ("vector.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "不是可识别的图片"),
])
def test_an_upload_that_is_not_a_good_image_is_refused_and_nothing_is_saved(app, base, owner, media, name, data,
                                                                              message):
    good = ("pictures", ("ok.jpg", jpeg_photo(300, 200), "image/jpeg"))
    res = submit_new(owner, base, files=[good, ("pictures", (name, data, "image/jpeg"))])
    assert res.status_code == 400, res.text
    assert message in res.text and "第 2 张图片" in res.text
    assert 'value="山茶花洗护礼盒"' in res.text  # the form comes back filled in
    assert product_count() == 0 and not entries("product.create")
    assert not media.exists() or not list(media.iterdir())  # not even the good picture was written


def test_an_upload_over_10_mb_is_413_with_the_admin_error_page(app, base, owner, media):
    noise = io.BytesIO()
    Image.effect_noise((3000, 2000), 100).convert("RGB").save(noise, "JPEG", quality=95)  # noise hardly compresses
    photo = noise.getvalue()
    assert 2 * MB < len(photo) < 10 * MB
    res = submit_new(owner, base, files=[("pictures", ("huge.jpg", photo * 2, "image/jpeg"))])
    assert res.status_code == 413 and "提交的内容太大" in res.text
    assert product_count() == 0
    # Between the app's 2 MB and the form's 10 MB: taken on the product form, and shrunk.
    res = submit_new(owner, base, files=[("pictures", ("big.jpg", photo, "image/jpeg"))])
    assert res.status_code == 302, res.text
    [url] = fresh(db.session.scalar(select(Product.id))).images
    assert Image.open(io.BytesIO(requests.get(f"{base}{url}").content)).size == (1080, 720)
    # ... and 3 MB anywhere else in the admin is still too much.
    p = seeded()
    res = post(owner, f"{base}/admin/products/{p.id}/order", {"sort_order": "1", "pad": "x" * (3 * MB)})
    assert res.status_code == 413 and "提交的内容太大" in res.text
    assert fresh(p.id).sort_order == 0


@pytest.mark.parametrize("fields, message", [
    ({"price": "-1"}, "请填写正确的金额"),
    ({"price": "0"}, "价格需在 0.01 元到 100 万元之间"),
    ({"price": "1000000.01"}, "价格需在 0.01 元到 100 万元之间"),
    ({"price": ""}, "请填写价格"),
    ({"stock": "-5"}, "库存需为 0 到 1000 万之间的整数"),
    ({"stock": "1.5"}, "库存请填写整数"),
    ({"name": "  "}, "商品名称需 1-64 个字"),
    ({"name": "名" * 65}, "商品名称需 1-64 个字"),
    ({"level1": "25", "level2": "10"}, "超过两级佣金合计上限 30%"),
    ({"level1": "35"}, "超过两级佣金合计上限 30%"),  # with the default level 2 (5%)
    ({"level1": "101"}, "佣金比例需在 0%-100% 之间"),
    ({"level1": "12.345"}, "一级佣金比例请填写 0-100 之间的百分数"),
    ({"level2": "-3"}, "二级佣金比例请填写 0-100 之间的百分数"),
    ({"sort_order": "-1"}, "排序需为 0 到 100 万"),
])
def test_bad_fields_are_refused_with_a_clear_message_on_create_and_edit(app, base, owner, fields, message):
    res = submit_new(owner, base, **fields)
    assert res.status_code == 400 and message in res.text, res.text[:2000]
    assert product_count() == 0
    p = seeded()
    res = submit_edit(owner, base, p.id, **fields)
    assert res.status_code == 400 and message in res.text
    after = fresh(p.id)
    assert (after.name, after.price_fen, after.stock, after.level1_rate_bp, after.sort_order) == \
        ("竹纤维洗碗布", 1990, 10, None, 0)
    assert not entries("product.update")


def test_rates_in_percent_with_two_decimals_are_exact_basis_points(app, base, owner):
    assert submit_new(owner, base, level1="12.34", level2="０.５").status_code == 302  # full-width digits too
    p = db.session.scalars(select(Product)).one()
    assert (p.level1_rate_bp, p.level2_rate_bp) == (1234, 50)
    page = owner.get(f"{base}/admin/products/{p.id}").text
    assert 'value="12.34"' in page and 'value="0.5"' in page
    assert "12.34% / 0.5%" in owner.get(f"{base}/admin/products").text


def test_an_unknown_product_is_404(app, base, owner):
    assert owner.get(f"{base}/admin/products/424242").status_code == 404
    res = owner.post(f"{base}/admin/products/424242",
                     data={**form_of(owner.get(f"{base}/admin/products").text), **FIELDS}, allow_redirects=False)
    assert res.status_code == 404 and "商品不存在" in res.text
    for action, data in (("shelf", {"on_sale": "0"}), ("order", {"sort_order": "1"})):
        res = post(owner, f"{base}/admin/products/424242/{action}", data, htmx=True)
        assert res.status_code == 404 and "商品不存在" in res.text
    assert owner.get(f"{base}/admin/products/99999999999").status_code == 404
    assert product_count() == 0


# -- who may -------------------------------------------------------------------------

def test_roles_without_products_edit_get_403_and_nothing_changes(app, base, staff_browser, media):
    p = seeded()
    operator = staff_browser("operator")
    assert operator.get(f"{base}/admin/products").status_code == 200
    for role in ("finance", "shipping"):
        b = staff_browser(role)
        assert b.get(f"{base}/admin/products").status_code == 403
        assert b.get(f"{base}/admin/products/new").status_code == 403
        assert b.get(f"{base}/admin/products/{p.id}").status_code == 403
        csrf = token(b.get(f"{base}/admin/").text)
        for url, data in ((f"/admin/products/new", FIELDS), (f"/admin/products/{p.id}", FIELDS),
                          (f"/admin/products/{p.id}/shelf", {"on_sale": "0"}),
                          (f"/admin/products/{p.id}/order", {"sort_order": "9"})):
            res = b.post(f"{base}{url}", data={**data, "csrf_token": csrf}, allow_redirects=False)
            assert res.status_code == 403 and "没有权限" in res.text, (role, url)
        assert "商品" not in re.sub(r"<main.*", "", b.get(f"{base}/admin/").text, flags=re.S)  # not in the menu
    after = fresh(p.id)
    assert (after.on_sale, after.sort_order, product_count()) == (True, 0, 1)
    assert not entries("product.update") and not entries("product.unshelve")
    assert post(operator, f"{base}/admin/products/{p.id}/shelf", {"on_sale": "0"}).status_code == 302


def test_a_post_without_csrf_is_refused(app, base, owner):
    p = seeded()
    res = owner.post(f"{base}/admin/products/{p.id}/shelf", data={"on_sale": "0"}, allow_redirects=False)
    assert res.status_code == 400 and "页面已过期" in res.text
    assert fresh(p.id).on_sale is True


# -- one form, one product ------------------------------------------------------------

def test_the_new_product_form_submitted_twice_is_one_product(app, base, owner, media):
    page = owner.get(f"{base}/admin/products/new").text
    data = {**form_of(page), **FIELDS}
    files = [("pictures", ("a.jpg", jpeg_photo(400, 300, 1), "image/jpeg"))]
    first = owner.post(f"{base}/admin/products/new", data=data, files=files, allow_redirects=False)
    second = owner.post(f"{base}/admin/products/new", data=data, files=files, allow_redirects=False)
    assert first.status_code == second.status_code == 302
    assert first.headers["Location"] == second.headers["Location"]
    assert product_count() == 1 and len(entries("product.create")) == 1
    # A fresh form is a new product; a forged key is refused.
    assert submit_new(owner, base).status_code == 302 and product_count() == 2
    res = owner.post(f"{base}/admin/products/new", data={**data, "form_key": "x"}, allow_redirects=False)
    assert res.status_code == 400 and "页面已过期" in res.text and product_count() == 2


@needs_postgres
def test_the_new_product_form_submitted_twice_at_once_is_one_product(app, base, owner, media):
    page = owner.get(f"{base}/admin/products/new").text
    data = {**form_of(page), **FIELDS}
    cookies = owner.cookies.get_dict()
    results: list[int] = []
    start = threading.Barrier(4)

    def submit():
        with requests.Session() as s:
            s.cookies.update(cookies)
            start.wait()
            results.append(s.post(f"{base}/admin/products/new", data=data, allow_redirects=False).status_code)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [302] * 4
    assert product_count() == 1 and len(entries("product.create")) == 1


@needs_postgres
def test_two_staff_toggling_the_shelf_at_once_leave_one_state_and_one_row_each_change(app, base, staff_browser,
                                                                                     media):
    product_id = seeded().id
    browsers = [staff_browser("owner"), staff_browser("operator")]
    csrf = [token(b.get(f"{base}/admin/").text) for b in browsers]
    start = threading.Barrier(2)
    codes: list[int] = []

    def off(i: int):
        start.wait()
        codes.append(browsers[i].post(f"{base}/admin/products/{product_id}/shelf",
                                      data={"on_sale": "0", "csrf_token": csrf[i]}, allow_redirects=False).status_code)

    threads = [threading.Thread(target=off, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [302, 302]
    assert fresh(product_id).on_sale is False and len(entries("product.unshelve")) == 1


# -- the command line -----------------------------------------------------------------

def test_the_cli_says_who_changed_a_product(app):
    runner = app.test_cli_runner()
    out = runner.invoke(args=["products", "add", "--name", "红枣", "--price-fen", "5900", "--stock", "3",
                              "--sort-order", "7"])
    assert out.exit_code == 0, out.output
    p = db.session.scalars(select(Product)).one()
    assert p.sort_order == 7
    assert runner.invoke(args=["products", "update", str(p.id), "--off-sale", "--price-fen", "6900"]).exit_code == 0
    [created], [updated], [unshelved] = entries("product.create"), entries("product.update"), entries("product.unshelve")
    assert all(e.actor.startswith("cli:") for e in (created, updated, unshelved))
    assert updated.before == {"price_fen": 5900} and updated.after == {"price_fen": 6900}
    assert "order 7" in runner.invoke(args=["products", "list"]).output
