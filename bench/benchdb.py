"""What the PostgreSQL benchmarks share: a database of their own, dropped
and made again, never one whose name lacks "bench"; sandbox followers to
send messages to."""
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


def sandbox_followers(n: int) -> list:
    """``n`` sandbox WeChat users who follow the account, in the caller's app
    context; their profile fetches are left out of any backlog (plain commits,
    not outbox.commit)."""
    from app.extensions import db
    from handlers import users
    from sandbox.people import create_user

    people = []
    for i in range(n):
        person = create_user(f"粉丝{i}")
        person.subscribed = True
        db.session.commit()
        users.subscribe(person.openid)
        db.session.commit()
        people.append(users.get_user(person.openid))
    return people
