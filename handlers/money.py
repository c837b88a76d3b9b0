"""Money is integer fen; yuan are only for people (and Alipay's amounts)."""
from __future__ import annotations

import re
import unicodedata

from .errors import DomainError

YUAN = re.compile(r"^([0-9]{1,9})(?:\.([0-9]{1,2}))?$")


def yuan(fen: int) -> str:
    """12345 → "123.45"."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def to_fen(text: str) -> int:
    """ "123.4" → 12340, exactly (no floats); anything else is refused."""
    # NFKC: full-width digits and points from a Chinese keyboard ("１０．５") count.
    text = unicodedata.normalize("NFKC", text or "").strip().replace("¥", "")
    match = YUAN.match(text)
    if not match:
        raise DomainError("请填写正确的金额（元，最多两位小数）")
    whole, cents = match.group(1), (match.group(2) or "").ljust(2, "0")
    return int(whole) * 100 + int(cents)
