"""Tables and the invariants a database can keep. One module per area."""
from .application import APPLICATION_STATES, Application, ApplicationStatus
from .base import Base, db, utcnow
from .distributor import Distributor, DistributorStatus, QRStatus, Unit
from .referral import ReferralTouch, TouchOutcome
from .sandbox import SandboxMedia, SandboxMenu, SandboxMessage, SandboxQRCode, SandboxUser
from .states import IllegalTransition, StateMachine
from .user import FirstContact, Source, Subscription, User

__all__ = [
    "Base", "db", "utcnow", "IllegalTransition", "StateMachine",
    "User", "Subscription", "FirstContact", "Source",
    "Distributor", "DistributorStatus", "Unit", "QRStatus",
    "Application", "ApplicationStatus", "APPLICATION_STATES",
    "ReferralTouch", "TouchOutcome",
    "SandboxUser", "SandboxQRCode", "SandboxMessage", "SandboxMedia", "SandboxMenu",
]
