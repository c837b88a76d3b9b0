"""The one place the product asks what time it is (UTC, timezone-aware)."""
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc)
