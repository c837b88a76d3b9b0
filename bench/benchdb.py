"""What the PostgreSQL benchmarks share: a database of their own, dropped
and made again, never one whose name lacks "bench"."""
from __future__ import annotations


def recreate_database(url: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    target = make_url(url)
    if target.get_backend_name() != "postgresql":
        raise SystemExit("this benchmark measures PostgreSQL: give a postgresql+psycopg:// URL")
    name = target.database or ""
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name has no 'bench' in it")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
