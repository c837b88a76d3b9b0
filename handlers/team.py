"""A distributor's team: the people they brought."""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import ARRAY, Integer, any_, bindparam, func, literal, select, union_all

from models import Distributor, User, db

LIST_LIMIT = 100
MAX_IDS = 10_000  # recruits listed by their user ids up to this many (SQLite: parameters in a statement)


@dataclass
class Team:
    customer_count: int
    distributor_count: int
    level2_count: int                # level-2 distributors under me (a level-1 only)
    customers: list[User] = field(default_factory=list)            # brought by me, not distributors
    distributors: list[Distributor] = field(default_factory=list)  # brought by me, now distributors themselves


def _brought(distributor: Distributor):
    return User.referrer_id == distributor.user_id


def counts_of(distributor: Distributor) -> Team:
    """The team's three figures (the centre shows only these), in one statement.

    Customers are counted as everyone brought less those who became
    distributors: a count of the referrer's index entries and one of a
    partial index holding only distributors' users (``is_distributor``),
    instead of an anti-join walking tens of thousands of customers against
    every distributor. One statement is one snapshot, so the difference is
    exact."""
    brought = select(func.count()).select_from(User).where(_brought(distributor)).scalar_subquery()
    recruits = select(func.count()).select_from(User).where(_brought(distributor), User.is_distributor).scalar_subquery()
    level2 = (select(func.count()).select_from(Distributor).where(Distributor.parent_id == distributor.id)
              .scalar_subquery())
    everyone, recruited, under = db.session.execute(select(brought, recruits, level2)).one()
    return Team(customer_count=everyone - recruited, distributor_count=recruited,
                level2_count=under if distributor.level == 1 else 0)


def team_of(distributor: Distributor) -> Team:
    """The figures and the newest ``LIST_LIMIT`` of each list.

    One statement reads the recruits' user ids (from the partial index the
    centre counts), how many were brought and the level-2s, so the
    figures are one snapshot; the distributors listed are then read by
    those user ids, not by walking every distributor newest first."""
    brought = _brought(distributor)
    rows = db.session.execute(union_all(
        select(literal("recruit"), User.id).where(brought, User.is_distributor),
        select(literal("brought"), func.count()).select_from(User).where(brought),
        select(literal("level2"), func.count()).select_from(Distributor)
        .where(Distributor.parent_id == distributor.id))).all()
    figures = {kind: value for kind, value in rows if kind != "recruit"}
    recruits = [value for kind, value in rows if kind == "recruit"]
    team = Team(customer_count=figures["brought"] - len(recruits), distributor_count=len(recruits),
                level2_count=figures["level2"] if distributor.level == 1 else 0)
    # Newest first from (referrer_id, attributed_at), stopping at the limit.
    team.customers = list(db.session.scalars(
        select(User).where(brought, User.attributed_at.is_not(None), ~User.is_distributor)
        .order_by(User.attributed_at.desc()).limit(LIST_LIMIT)))
    if recruits:
        newest = select(Distributor).order_by(Distributor.approved_at.desc()).limit(LIST_LIMIT)
        if db.session.get_bind().dialect.name == "postgresql":
            # One array parameter, however many recruits: an IN list of hundreds of parameters cost the
            # biggest distributor's page more CPU to render and parse than the rest of the page together.
            newest = newest.where(Distributor.user_id == any_(bindparam("ids", recruits, type_=ARRAY(Integer))))
        elif len(recruits) <= MAX_IDS:
            newest = newest.where(Distributor.user_id.in_(recruits))
        else:  # more ids than a statement takes parameters
            newest = newest.join(User, Distributor.user_id == User.id).where(brought)
        team.distributors = list(db.session.scalars(newest))
    return team
