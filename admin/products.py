"""商品: the catalogue list (filters, inline on/off the shelf and display
order), a new product, the edit form with its pictures. Every change goes
through handlers.catalogue, which checks it, stores the pictures
(handlers.media) and audits it."""
from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

from flask import render_template, request, url_for

from handlers import catalogue, media, outbox, settings
from handlers.errors import DomainError
from handlers.money import to_fen, yuan

from . import bp
from .auth import actor, can, requires
from .exports import button as export_button
from .support import before_arg, done, filter_args, keyset, run

# The product form carries pictures: up to 10 MB in all there, the app's 2 MB elsewhere.
UPLOAD_ENDPOINTS = frozenset({"admin.product_new", "admin.product_save"})
TEXT_FIELDS = ("name", "description", "price", "stock", "sort_order", "level1", "level2", "on_sale")


@bp.url_value_preprocessor
def _product_form_limit(endpoint: str | None, values: Any) -> None:
    # Runs before every before_request hook (the input guard and CSRF read
    # the body there), so the larger limit is in force when the form is parsed.
    if endpoint in UPLOAD_ENDPOINTS and request.method == "POST":
        request.max_content_length = media.MAX_BYTES


def _rules() -> Mapping[str, Any]:
    return settings.section("distribution")


def _back(default: str) -> str:
    """Where a list action returns: the list with its filters, never elsewhere."""
    target = request.form.get("back", "")
    if target.startswith("/admin/products") and not urlsplit(target).netloc and "\\" not in target:
        return target
    return default


# -- the list -------------------------------------------------------------------

@bp.get("/products")
@requires("products.view")
def products():
    args = filter_args("shelf", "q", "before")
    rows, next_before = keyset(catalogue.products_page(shelf=args.get("shelf"), search=args.get("q"),
                                                      before_id=before_arg()))
    return render_template("admin/products.html", products=rows, next_before=next_before, args=args,
                           sold=catalogue.sold_counts([p.id for p in rows]), rules=_rules(),
                           percent=catalogue.percent,
                           export=export_button("products", {k: v for k, v in args.items() if k != "before"}))


def _row(product, message: str):
    back = _back(url_for("admin.products"))
    return done(message, back, fragment="admin/product_row.html", p=product, back_to=back,
                sold=catalogue.sold_counts([product.id]), rules=_rules(), percent=catalogue.percent)


@bp.post("/products/<id:product_id>/shelf")
@requires("products.edit")
def product_shelf(product_id: int):
    wanted = request.form.get("on_sale", "")
    if wanted not in ("0", "1"):
        raise DomainError("请选择上架或下架")
    product = run(catalogue.set_on_sale, product_id, wanted == "1", actor=actor())
    return _row(product, f"「{product.name}」{'已上架' if product.on_sale else '已下架'}")


@bp.post("/products/<id:product_id>/order")
@requires("products.edit")
def product_order(product_id: int):
    order = catalogue.to_count(request.form.get("sort_order"), "排序")
    product = run(catalogue.set_sort_order, product_id, order, actor=actor())
    return _row(product, f"「{product.name}」的排序现在是 {product.sort_order}")


# -- the form -------------------------------------------------------------------

def _values_of(product) -> dict[str, str]:
    if product is None:
        return {"name": "", "description": "", "price": "", "stock": "0", "sort_order": "0", "level1": "",
                "level2": "", "on_sale": "1"}
    return {"name": product.name, "description": product.description or "", "price": yuan(product.price_fen),
            "stock": str(product.stock), "sort_order": str(product.sort_order),
            "level1": catalogue.percent_text(product.level1_rate_bp),
            "level2": catalogue.percent_text(product.level2_rate_bp), "on_sale": "1" if product.on_sale else ""}


def _submitted() -> dict[str, str]:
    return {name: request.form.get(name, "") for name in TEXT_FIELDS}


def _fields(values: Mapping[str, str]) -> dict[str, Any]:
    """The form's text as the handler's typed fields; DomainError names what is wrong."""
    if not values["price"].strip():
        raise DomainError("请填写价格")
    return {"name": values["name"], "description": values["description"], "price_fen": to_fen(values["price"]),
            "stock": catalogue.to_count(values["stock"] or "0", "库存"),
            "sort_order": catalogue.to_count(values["sort_order"] or "0", "排序"),
            "on_sale": values["on_sale"] == "1",
            "level1_rate_bp": catalogue.to_bp(values["level1"], "一级佣金比例"),
            "level2_rate_bp": catalogue.to_bp(values["level2"], "二级佣金比例")}


def _uploads() -> list[bytes]:
    """The chosen files' bytes (a file input left empty sends an empty part with no name)."""
    found = []
    for upload in request.files.getlist("pictures"):
        data = upload.read()
        if data or upload.filename:
            found.append(data)
    return found


def _form_page(product, values: Mapping[str, str], *, form_key: str = "", error: str | None = None,
               status: int = 200, stock_seen: int | None = None):
    readonly = not can("products.edit")
    if product is not None and stock_seen is None:
        stock_seen = product.stock
    return render_template("admin/product_form.html", product=product, values=values, form_key=form_key,
                           error=error, readonly=readonly, stock_seen=stock_seen, rules=_rules(), percent=catalogue.percent,
                           max_mb=media.MAX_BYTES // 1024 // 1024, max_pictures=catalogue.MAX_PICTURES), status


@bp.route("/products/new", methods=["GET", "POST"])
@requires("products.edit")
def product_new():
    if request.method == "GET":
        return _form_page(None, _values_of(None), form_key=catalogue.new_form_key())
    values = _submitted()
    form_key = request.form.get("form_key", "")
    try:
        product = run(catalogue.add_product, pictures=_uploads(), form_key=form_key, actor=actor(),
                      **_fields(values))
    except DomainError as exc:
        outbox.rollback()
        fresh = form_key if catalogue.FORM_KEY.match(form_key) else catalogue.new_form_key()
        return _form_page(None, values, form_key=fresh, error=exc.message, status=exc.status)
    return done(f"已保存商品「{product.name}」", url_for("admin.product", product_id=product.id))


@bp.get("/products/<id:product_id>")
@requires("products.view")
def product(product_id: int):
    item = catalogue.get_product(product_id)
    return _form_page(item, _values_of(item))


@bp.post("/products/<id:product_id>")
@requires("products.edit")
def product_save(product_id: int):
    values = _submitted()
    seen = request.form.get("stock_seen", "")
    stock_seen = int(seen) if seen.isascii() and seen.isdigit() and len(seen) < 10 else None
    try:
        item = run(catalogue.update_product, product_id, actor=actor(), pictures=_uploads(),
                   remove_images=request.form.getlist("remove"), cover=request.form.get("cover") or None,
                   stock_seen=stock_seen, **_fields(values))
    except DomainError as exc:
        outbox.rollback()
        item = catalogue.get_product(product_id)  # a product that does not exist: 404 from here
        if isinstance(exc, catalogue.StockMoved):  # show today's stock; submitting again sets the new one
            values["stock"], stock_seen = str(item.stock), item.stock
        return _form_page(item, values, error=exc.message, status=exc.status, stock_seen=stock_seen)
    return done(f"已保存商品「{item.name}」", url_for("admin.product", product_id=item.id))

