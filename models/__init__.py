"""Tables and the invariants a database can keep. One module per area."""
from .application import APPLICATION_STATES, Application, ApplicationStatus
from .audit import AuditEntry
from .base import Base, db, utcnow
from .distributor import Distributor, DistributorStatus, QRStatus, Unit
from .exports import Export, ExportState  # noqa: F401  (handlers.exports)
from .h5_session import H5Session  # noqa: F401  (a table of the H5 transport)
from .leaderboard import FROZEN_DISTRIBUTORS, PAYMENTS_BY_TIME  # noqa: F401  (indexes of handlers.leaderboard)
from .ledger import (COMMISSION_STATES, WITHDRAWAL_STATES, Balance, CommissionKind, CommissionRow,
                     CommissionState, Withdrawal, WithdrawalStatus)
from .menu import MenuVersion  # noqa: F401  (the account's menu, handlers.menu)
from .notification import Notification, NotificationKind
from .outbox import OutboxRow, OutboxState
from .order import ORDER_STATES, Order, OrderLine, OrderStatus, PayChannel
from .payment import NoticeVerdict, Payment, PaymentNotice, Refund, RefundOrigin, RefundStatus
from .reach import UnitVisit
from .reconcile import ReconcileDay, ReconcileDifference  # noqa: F401  (handlers.reconcile)
from .referral import ReferralTouch, TouchOutcome
from .rules import RuleRevision, RuleVersion  # noqa: F401  (the merchant's rules, handlers.rules)
from .sandbox import SandboxClock, SandboxMedia, SandboxMenu, SandboxMessage, SandboxQRCode, SandboxUser
from .shop import Address, Product, UnitProduct
from .staff import Staff, StaffRole, StaffSession
from .states import IllegalTransition, StateMachine
from .stats import DailyStat, DailyUnitStat, MonthlyUnitStat  # noqa: F401  (the statistics page's days)
from .user import FirstContact, Source, Subscription, User
from .wx_push import WxPush

__all__ = [
    "Base", "db", "utcnow", "IllegalTransition", "StateMachine",
    "User", "Subscription", "FirstContact", "Source",
    "Distributor", "DistributorStatus", "Unit", "QRStatus",
    "Application", "ApplicationStatus", "APPLICATION_STATES",
    "ReferralTouch", "TouchOutcome", "UnitVisit",
    "Product", "UnitProduct", "Address",
    "Order", "OrderLine", "OrderStatus", "ORDER_STATES", "PayChannel",
    "Payment", "PaymentNotice", "NoticeVerdict", "Refund", "RefundOrigin", "RefundStatus",
    "CommissionRow", "CommissionKind", "CommissionState", "COMMISSION_STATES", "Balance",
    "Withdrawal", "WithdrawalStatus", "WITHDRAWAL_STATES", "Notification", "NotificationKind",
    "OutboxRow", "OutboxState",
    "SandboxUser", "SandboxQRCode", "SandboxClock", "SandboxMessage", "SandboxMedia", "SandboxMenu",
    "WxPush",
    "Staff", "StaffRole", "StaffSession", "AuditEntry",
]
