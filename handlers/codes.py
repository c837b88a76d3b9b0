"""Random identifiers that say nothing about ids or about each other."""
from __future__ import annotations

import secrets

# No 0/O, 1/I/L: an invite code is read off a poster and typed by hand.
INVITE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
INVITE_LENGTH = 6
SLUG_LENGTH = 10
SCENE_PREFIX = "u"


def invite_code(length: int = INVITE_LENGTH) -> str:
    # Never all digits: staff name a distributor by number or by invite
    # code in one box, and a code like 234567 would read as a number.
    while True:
        code = "".join(secrets.choice(INVITE_ALPHABET) for _ in range(length))
        if not code.isdigit():
            return code


def normalise_invite_code(text: str) -> str | None:
    """The code a person typed, or None when it cannot be one."""
    code = "".join(text.split()).upper()
    if 6 <= len(code) <= 8 and all(c in INVITE_ALPHABET for c in code):
        return code
    return None


def slug() -> str:
    return secrets.token_urlsafe(SLUG_LENGTH)[:SLUG_LENGTH]


def scene() -> str:
    # QR_LIMIT_STR_SCENE allows 64 characters; 128 random bits are plenty.
    return SCENE_PREFIX + secrets.token_urlsafe(16)
