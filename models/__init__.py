"""Tables and the invariants a database can keep. One module per area."""
from .base import Base, db, utcnow
from .sandbox import SandboxMedia, SandboxMenu, SandboxMessage, SandboxQRCode, SandboxUser
from .user import FirstContact, Subscription, User

__all__ = [
    "Base", "db", "utcnow",
    "User", "Subscription", "FirstContact",
    "SandboxUser", "SandboxQRCode", "SandboxMessage", "SandboxMedia", "SandboxMenu",
]
