"""Commission rows, the balances kept in step with them, and withdrawals.

Every fen a distributor earns is one ``CommissionRow``: one order line, one
level, one beneficiary. The database allows one commission per (order line,
level) and one clawback per (order line, level), so a retried payment or
refund can never post twice. ``Balance`` holds the four sums a distributor
sees; it changes only in the same transaction as the rows behind it, under
the balance row's lock (or an atomic conditional UPDATE), so it always
equals the sum of its rows.
"""
from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, Fen, UTCDateTime, utcnow
from .distributor import Distributor
from .states import StateMachine, check_in


class CommissionKind(str, enum.Enum):
    COMMISSION = "commission"  # earned on a paid order line
    CLAWBACK = "clawback"      # a refund after the commission became withdrawable (negative)


class CommissionState(str, enum.Enum):
    FROZEN = "frozen"              # until the order is completed and freeze_days have passed
    WITHDRAWABLE = "withdrawable"
    REVERSED = "reversed"          # refunded while still frozen: never paid out


C = CommissionState
COMMISSION_STATES = StateMachine("commission", CommissionState, {
    C.FROZEN: {C.WITHDRAWABLE, C.REVERSED},
})


class CommissionRow(Base):
    __tablename__ = "commission_rows"
    __table_args__ = (
        UniqueConstraint("order_line_id", "level", "kind", name="uq_commission_rows_line_level_kind"),
        CheckConstraint("level IN (1, 2)", name="level"),
        CheckConstraint(check_in("kind", CommissionKind), name="kind"),
        CheckConstraint(check_in("state", CommissionState), name="state"),
        CheckConstraint("(kind = 'commission' AND amount_fen >= 0) OR (kind = 'clawback' AND amount_fen < 0)",
                        name="sign"),
        CheckConstraint("rate_bp >= 0 AND rate_bp <= 10000 AND base_fen > 0", name="rate_and_base"),
        Index("ix_commission_rows_distributor_id_created_at", "distributor_id", "created_at"),
        Index("ix_commission_rows_state_settle_at", "state", "settle_at"),
        # The income page: a distributor's newest rows, and a month of them summed by day from the index alone.
        Index("ix_commission_rows_distributor_id_id", "distributor_id", "id"),
        Index("ix_commission_rows_distributor_id_created_at_state_amount", "distributor_id", "created_at", "state",
              "amount_fen"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    distributor_id: Mapped[int] = mapped_column(ForeignKey("distributors.id"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    order_line_id: Mapped[int] = mapped_column(ForeignKey("order_lines.id"))
    level: Mapped[int] = mapped_column(SmallInteger)
    kind: Mapped[str] = mapped_column(String(16), default=CommissionKind.COMMISSION.value)
    # What it was computed from, as it was: base × rate ÷ 10000, rounded down.
    base_fen: Mapped[Fen]
    rate_bp: Mapped[int]
    amount_fen: Mapped[Fen]
    state: Mapped[str] = mapped_column(String(16), default=CommissionState.FROZEN.value)
    settle_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # set when the order completes
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reversed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    distributor: Mapped[Distributor] = relationship()


class Balance(Base):
    """The distributor's sums, kept equal to their rows (see module doc).
    ``withdrawable_fen`` may go below zero after a clawback, and then blocks
    withdrawals until later commission makes it good."""

    __tablename__ = "balances"
    __table_args__ = (
        CheckConstraint("frozen_fen >= 0 AND reserved_fen >= 0 AND withdrawn_fen >= 0", name="not_negative"),
    )

    distributor_id: Mapped[int] = mapped_column(ForeignKey("distributors.id"), primary_key=True)
    frozen_fen: Mapped[Fen] = mapped_column(default=0)
    withdrawable_fen: Mapped[Fen] = mapped_column(default=0)
    reserved_fen: Mapped[Fen] = mapped_column(default=0)   # asked for, not yet paid
    withdrawn_fen: Mapped[Fen] = mapped_column(default=0)
    lifetime_fen: Mapped[Fen] = mapped_column(default=0)   # settled commission minus clawbacks


class WithdrawalStatus(str, enum.Enum):
    REQUESTED = "requested"      # money reserved, waiting for the merchant
    TRANSFERRING = "transferring"  # a WeChat Pay transfer bill waits for the distributor to confirm
    PAID = "paid"
    REJECTED = "rejected"        # by the merchant, with a reason: the money comes back
    FAILED = "failed"            # the transfer failed or was cancelled: the money comes back


W = WithdrawalStatus
WITHDRAWAL_STATES = StateMachine("withdrawal", WithdrawalStatus, {
    W.REQUESTED: {W.TRANSFERRING, W.PAID, W.REJECTED},
    W.TRANSFERRING: {W.PAID, W.FAILED},
})


class Withdrawal(Base):
    __tablename__ = "withdrawals"
    __table_args__ = (
        UniqueConstraint("distributor_id", "request_key", name="uq_withdrawals_distributor_request_key"),
        CheckConstraint(check_in("status", WithdrawalStatus), name="status"),
        CheckConstraint("amount_fen > 0 AND fee_fen >= 0 AND fee_fen < amount_fen", name="amounts"),
        CheckConstraint("method IS NULL OR method IN ('wechat_transfer', 'manual')", name="method"),
        CheckConstraint("approval_method IS NULL OR approval_method IN ('wechat_transfer', 'manual')",
                        name="approval_method"),
        Index("ix_withdrawals_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    distributor_id: Mapped[int] = mapped_column(ForeignKey("distributors.id"), index=True)
    request_key: Mapped[str] = mapped_column(String(64))  # the form's one-time key: a double tap is one request
    amount_fen: Mapped[Fen]   # taken from the balance
    fee_fen: Mapped[Fen]      # kept by the merchant; the distributor receives amount - fee
    status: Mapped[str] = mapped_column(String(16), default=WithdrawalStatus.REQUESTED.value)
    method: Mapped[str | None] = mapped_column(String(16))
    out_bill_no: Mapped[str | None] = mapped_column(String(32), unique=True)
    package_info: Mapped[str | None] = mapped_column(String(512))
    reference: Mapped[str | None] = mapped_column(String(64))  # a manual payment's reference
    reason: Mapped[str | None] = mapped_column(String(200))    # why rejected or failed
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Dual approval (above [admin] dual_approval_fen): the first staff member's
    # payment waits here — who asked, how, with which reference — until a
    # different one confirms it; then ``approved_by`` names the second.
    approval_by: Mapped[str | None] = mapped_column(String(64))  # the actor's name (staff name or cli:login)
    approval_staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff.id"))
    approval_method: Mapped[str | None] = mapped_column(String(16))
    approval_reference: Mapped[str | None] = mapped_column(String(64))
    approval_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    approved_by: Mapped[str | None] = mapped_column(String(64))
    # The WeChat Pay transfer bill as last heard of: its state (WAIT_USER_CONFIRM,
    # CANCELING, SUCCESS, FAIL, CANCELLED…), when it was created (WeChat Pay
    # cancels a bill left unconfirmed for 24 hours) and when we asked to cancel it.
    transfer_state: Mapped[str | None] = mapped_column(String(24))
    transfer_created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def net_fen(self) -> int:
        return self.amount_fen - self.fee_fen
