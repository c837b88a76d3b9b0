"""The one place the product asks what time it is (UTC, timezone-aware)."""
from datetime import datetime, timedelta, timezone

# People read times in China Standard Time; the database keeps UTC.
CHINA = timezone(timedelta(hours=8), "CST")


def now() -> datetime:
    return datetime.now(timezone.utc)
