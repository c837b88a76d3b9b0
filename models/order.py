"""Orders and their lines: one state machine, written once."""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, Fen, UTCDateTime, utcnow
from .states import StateMachine, check_in


class OrderStatus(str, enum.Enum):
    PENDING = "pending"        # waiting for payment; stock reserved
    PAID = "paid"
    SHIPPED = "shipped"
    COMPLETED = "completed"    # receipt confirmed, by the buyer or after auto_confirm_days
    CANCELLED = "cancelled"    # by the buyer or after pay_timeout_minutes; stock returned
    REFUNDING = "refunding"    # the merchant asked the gateway to refund
    REFUNDED = "refunded"


S = OrderStatus
ORDER_STATES = StateMachine("order", OrderStatus, {
    S.PENDING: {S.PAID, S.CANCELLED},
    S.PAID: {S.SHIPPED, S.REFUNDING},
    S.SHIPPED: {S.COMPLETED, S.REFUNDING},
    # After-sales: a completed order can still be refunded; its commission,
    # if already withdrawable, is then clawed back.
    S.COMPLETED: {S.REFUNDING},
    S.REFUNDING: {S.REFUNDED, S.PAID, S.SHIPPED, S.COMPLETED},  # back where it was if the gateway refuses
    # A payment that lands after the order timed out: the buyer's money is
    # real, so the order is paid again when its stock can still be had.
    S.CANCELLED: {S.PAID},
})

STATUS_TEXT = {S.PENDING: "待付款", S.PAID: "待发货", S.SHIPPED: "待收货", S.COMPLETED: "已完成",
               S.CANCELLED: "已取消", S.REFUNDING: "退款中", S.REFUNDED: "已退款"}


class PayChannel(str, enum.Enum):
    WECHATPAY = "wechatpay"
    ALIPAY = "alipay"


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(check_in("status", OrderStatus), name="status"),
        CheckConstraint("goods_fen > 0 AND total_fen = goods_fen", name="amounts"),
        CheckConstraint("refunded_fen >= 0 AND refunded_fen <= total_fen", name="refunded"),
        CheckConstraint("buyer_id IS NOT NULL OR guest_mobile IS NOT NULL", name="has_buyer"),
        CheckConstraint("pay_channel IS NULL OR " + check_in("pay_channel", PayChannel), name="pay_channel"),
        Index("ix_orders_buyer_id_id", "buyer_id", "id"),
        Index("ix_orders_unit_id_id", "unit_id", "id"),
        # A unit's sales in a period (the centre's reach), from the index alone: the biggest unit's week is
        # thousands of orders (migration f5b000000021).
        Index("ix_orders_unit_id_paid_at_sales", "unit_id", "paid_at",
              postgresql_include=["status", "total_fen", "refunded_fen", "id"]),
        Index("ix_orders_status_expires_at", "status", "expires_at"),
        # The staff's order list (handlers.order_search): newest first by id
        # within each filter, so a page is an index range scan at any size.
        Index("ix_orders_status_id", "status", "id"),
        # With the amounts, so a distributor's sales (the staff's detail page) are read from the index alone.
        Index("ix_orders_distributor_id_id", "distributor_id", "id",
              postgresql_include=["paid_at", "total_fen", "refunded_fen"]),
        Index("ix_orders_parent_distributor_id_id", "parent_distributor_id", "id"),
        Index("ix_orders_receiver_mobile_id", "receiver_mobile", "id"),
        Index("ix_orders_created_at", "created_at"),
        Index("ix_orders_paid_at", "paid_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Human-friendly, not guessable, not the primary key: the gateways' out_trade_no.
    order_no: Mapped[str] = mapped_column(String(32), unique=True)
    # The checkout form's one-time key: a form submitted twice is one order.
    checkout_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    buyer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    guest_mobile: Mapped[str | None] = mapped_column(String(11), index=True)
    # Where the sale counts, decided on the server (PRODUCT.md flow 7), and
    # the distributor chain as it was at that moment.
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    distributor_id: Mapped[int | None] = mapped_column(ForeignKey("distributors.id"))
    parent_distributor_id: Mapped[int | None] = mapped_column(ForeignKey("distributors.id"))
    status: Mapped[str] = mapped_column(String(16), default=OrderStatus.PENDING.value)
    goods_fen: Mapped[Fen]
    total_fen: Mapped[Fen]
    # What went back of the sale: the order's succeeded refunds, except those
    # of money it never kept (an automatic refund, a duplicate payment's).
    # Kept by handlers.payments under the order's lock, so a distributor's or
    # a unit's net sales are summed from an index, not joined with refunds.
    refunded_fen: Mapped[Fen] = mapped_column(default=0, server_default="0")
    receiver_name: Mapped[str] = mapped_column(String(32))
    receiver_mobile: Mapped[str] = mapped_column(String(11))
    receiver_address: Mapped[str] = mapped_column(String(200))
    note: Mapped[str] = mapped_column(String(200), default="")
    pay_channel: Mapped[str | None] = mapped_column(String(16))
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    carrier: Mapped[str | None] = mapped_column(String(32))
    # Whether the order's stock is taken and not given back: a cancel or a
    # refund returns stock only when this says so, and clears it.
    holds_stock: Mapped[bool] = mapped_column(default=True, server_default=true())
    tracking_no: Mapped[str | None] = mapped_column(String(64))
    cancel_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    auto_confirm_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    refunded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    lines: Mapped[list["OrderLine"]] = relationship(back_populates="order", order_by="OrderLine.id",
                                                    lazy="selectin")

    @property
    def status_text(self) -> str:
        return STATUS_TEXT[OrderStatus(self.status)]

    @property
    def title(self) -> str:
        first = self.lines[0].name if self.lines else "商品"
        return first if len(self.lines) <= 1 else f"{first} 等 {len(self.lines)} 件"


class OrderLine(Base):
    """What was bought, as it was when bought."""

    __tablename__ = "order_lines"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("unit_price_fen > 0 AND amount_fen = unit_price_fen * quantity", name="amount"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    name: Mapped[str] = mapped_column(String(64))
    image: Mapped[str | None] = mapped_column(String(512))
    unit_price_fen: Mapped[Fen]
    quantity: Mapped[int]
    amount_fen: Mapped[Fen]
    level1_rate_bp: Mapped[int | None]
    level2_rate_bp: Mapped[int | None]

    order: Mapped[Order] = relationship(back_populates="lines")
