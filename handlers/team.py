"""A distributor's team: the people they brought."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, func, select

from models import Distributor, User, db

LIST_LIMIT = 100


@dataclass
class Team:
    customers: list[User]            # brought by me, not distributors
    distributors: list[Distributor]  # brought by me, now distributors themselves
    customer_count: int
    distributor_count: int
    level2_count: int                # level-2 distributors under me (a level-1 only)


def team_of(distributor: Distributor) -> Team:
    # Customers are the users brought who are not distributors: an anti-join
    # (NOT EXISTS) the planner runs from the indexes alone, even for a
    # distributor with tens of thousands of customers.
    customers = select(User).where(User.referrer_id == distributor.user_id,
                                   ~exists().where(Distributor.user_id == User.id))
    distributors = (select(Distributor).join(User, Distributor.user_id == User.id)
                    .where(User.referrer_id == distributor.user_id))
    count = lambda q: db.session.scalar(select(func.count()).select_from(q.subquery()))  # noqa: E731
    level2 = 0
    if distributor.level == 1:
        level2 = db.session.scalar(select(func.count()).select_from(Distributor)
                                   .where(Distributor.parent_id == distributor.id))
    return Team(
        customers=list(db.session.scalars(customers.where(User.attributed_at.is_not(None))
                                          .order_by(User.attributed_at.desc()).limit(LIST_LIMIT))),
        distributors=list(db.session.scalars(distributors.order_by(Distributor.approved_at.desc())
                                             .limit(LIST_LIMIT))),
        customer_count=count(customers),
        distributor_count=count(distributors),
        level2_count=level2,
    )
