"""The merchant's catalogue and each unit's selection from it."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Fen, UTCDateTime, utcnow


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_fen > 0", name="price_positive"),
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("level1_rate_bp IS NULL OR (level1_rate_bp >= 0 AND level1_rate_bp <= 10000)",
                        name="level1_rate"),
        CheckConstraint("level2_rate_bp IS NULL OR (level2_rate_bp >= 0 AND level2_rate_bp <= 10000)",
                        name="level2_rate"),
        # The merchant's cap ([distribution] max_total_rate_bp) is checked by
        # handlers.catalogue; the database keeps the cap no setting can lift.
        CheckConstraint("COALESCE(level1_rate_bp, 0) + COALESCE(level2_rate_bp, 0) <= 10000", name="total_rate"),
        # The shop lists by display order, then id.
        Index("ix_products_shelf_order", "on_sale", "sort_order", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    images: Mapped[list[Any]] = mapped_column(JSON, default=list)  # URLs, the first is the cover
    price_fen: Mapped[Fen]
    stock: Mapped[int] = mapped_column(default=0)
    on_sale: Mapped[bool] = mapped_column(default=True)
    # Per-product commission in basis points; None means the merchant default.
    level1_rate_bp: Mapped[int | None]
    level2_rate_bp: Mapped[int | None]
    # Display order in the shop: smaller first, then the older product.
    sort_order: Mapped[int] = mapped_column(default=0, server_default="0")
    # The admin's new-product form's one-time key: the form submitted twice is one product.
    create_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    @property
    def cover(self) -> str | None:
        return self.images[0] if self.images else None


class UnitProduct(Base):
    """A distributor's chosen subset; a unit with none shows every product on sale."""

    __tablename__ = "unit_products"
    __table_args__ = (UniqueConstraint("unit_id", "product_id", name="uq_unit_products_unit_product"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))


class Address(Base):
    """The receiver a buyer used last, offered again at checkout."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    name: Mapped[str] = mapped_column(String(32))
    mobile: Mapped[str] = mapped_column(String(11))
    address: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
