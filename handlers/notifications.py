"""The notification centre (PRODUCT.md flow 11): an in-app row and a WeChat
template message for each event, exactly once.

Each event has a key (``order:17:paid``); the row is inserted with ON
CONFLICT DO NOTHING on that key, and the template message is queued only
when the row is new, under the same key as its job id — so a retried
payment, job or refund never notifies twice. The row also records when its
message was sent (``sent_at``, checked under the row's lock before sending),
so a job that runs twice sends once.

Template keywords (set up the templates in the WeChat console with these):
new_member: thing1 (member), time2 · new_order: character_string1 (order
no.), amount2 (order amount), amount3 (commission), time4 ·
commission_settled: amount1, time2 · application_approved: thing1 (shop),
time2 · application_rejected: thing1 (reason), time2 · withdrawal_paid:
amount1 (received), time2 · withdrawal_rejected: amount1, thing2 (reason),
time3 · order_paid: character_string1 (order no.), amount2 (paid), thing3
(goods), time4 · order_shipped: character_string1 (order no.), thing2
(carrier), character_string3 (tracking no.), time4 · order_refunded:
character_string1 (order no.), amount2 (refunded), thing3 (reason), time4 ·
commission_clawed_back: character_string1 (order no.), amount2 (taken
back), time3 · distributor_frozen: thing1 (reason), time2 ·
distributor_unfrozen: thing1 (reason), time2. Since 2023 WeChat ignores
``first`` and ``remark``.

The buyer hears about their own order (paid, shipped, refunded) only when
they are a WeChat user; a guest outside WeChat has no account to notify and
reads the same on the order page.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from models import Distributor, Notification, NotificationKind, Order, User, Withdrawal, db
from models.base import insert_ignoring_conflict

from . import outbox, settings
from .clock import CHINA, now
from .money import yuan

K = NotificationKind


def notify(user: User, kind: NotificationKind, event_key: str, title: str, body: str, page: str | None,
           template: dict[str, str], at: datetime | None = None) -> bool:
    at = at or now()
    url = settings.page_url(page) if page else None
    notification_id = db.session.scalars(insert_ignoring_conflict(Notification, {
        "user_id": user.id, "kind": kind.value, "event_key": event_key[:96], "title": title[:64],
        "body": body[:500], "url": url, "created_at": at,
    }, ["event_key"]).returning(Notification.id)).one_or_none()
    template_id = settings.section("templates").get(kind.value, "")
    if notification_id is not None and template_id:
        data = {**template, "time": at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M")}
        outbox.after_commit("wxbot.jobs.send_template", user.openid, template_id, data, url, notification_id,
                            job_id="template-" + event_key.replace(":", "-"))
    return notification_id is not None


def claim_delivery(notification_id: int) -> bool:
    """May this notification's WeChat message be sent now? Read under the
    row's lock (PostgreSQL), so a second run of the same job waits for the
    first and then finds it sent."""
    sent_at = db.session.execute(select(Notification.sent_at).where(Notification.id == notification_id)
                                 .with_for_update()).one_or_none()
    return sent_at is not None and sent_at[0] is None


def delivered(notification_id: int, at: datetime | None = None) -> None:
    """The WeChat message went out: a re-run of its job sends nothing."""
    db.session.execute(update(Notification).where(Notification.id == notification_id)
                       .values(sent_at=at or now()).execution_options(synchronize_session=False))


def new_member(distributor: Distributor, member: User, at: datetime | None = None) -> None:
    notify(distributor.user, K.NEW_MEMBER, f"member:{member.id}", "新成员加入",
           f"{member.display_name} 通过你的推广加入了你的团队", "team", {"thing1": member.display_name[:20]}, at)


def new_order(order: Order, commission_fen: int, at: datetime | None = None) -> None:
    if order.distributor_id is None:
        return
    distributor = db.session.get(Distributor, order.distributor_id)
    earned = f"，预计佣金 ¥{yuan(commission_fen)}（冻结中）" if commission_fen else ""
    notify(distributor.user, K.NEW_ORDER, f"order:{order.id}:paid", "小店有新订单",
           f"订单 {order.order_no} 已付款 ¥{yuan(order.total_fen)}{earned}",
           "income", {"character_string1": order.order_no, "amount2": yuan(order.total_fen),
                      "amount3": yuan(commission_fen)}, at)


def commission_settled(distributor_id: int, order_id: int, amount_fen: int, at: datetime | None = None) -> None:
    distributor = db.session.get(Distributor, distributor_id)
    notify(distributor.user, K.COMMISSION_SETTLED, f"settled:{order_id}:{distributor_id}", "佣金可提现",
           f"¥{yuan(amount_fen)} 佣金已过退款期，现在可以提现了", "income", {"amount1": yuan(amount_fen)}, at)


def application_decided(user: User, application_id: int, approved: bool, shop_or_reason: str,
                        at: datetime | None = None) -> None:
    if approved:
        notify(user, K.APPLICATION_APPROVED, f"application:{application_id}:approved", "分销商申请已通过",
               f"恭喜！「{shop_or_reason}」已开张，专属二维码海报和邀请码已准备好", "center",
               {"thing1": shop_or_reason[:20]}, at)
    else:
        notify(user, K.APPLICATION_REJECTED, f"application:{application_id}:rejected", "分销商申请未通过",
               f"原因：{shop_or_reason}。你仍可照常购物，冷静期后可重新申请", "apply",
               {"thing1": shop_or_reason[:20]}, at)


def withdrawal_decided(withdrawal: Withdrawal, paid: bool, at: datetime | None = None) -> None:
    user = db.session.get(Distributor, withdrawal.distributor_id).user
    if paid:
        notify(user, K.WITHDRAWAL_PAID, f"withdrawal:{withdrawal.id}:paid", "提现已到账",
               f"¥{yuan(withdrawal.net_fen)} 已打款" + (f"（手续费 ¥{yuan(withdrawal.fee_fen)}）" if withdrawal.fee_fen else ""),
               "withdraw",
               {"amount1": yuan(withdrawal.net_fen)}, at)
    else:
        notify(user, K.WITHDRAWAL_REJECTED, f"withdrawal:{withdrawal.id}:{withdrawal.status}", "提现未成功",
               f"¥{yuan(withdrawal.amount_fen)} 已退回可提现余额。原因：{withdrawal.reason or '转账未完成'}",
               "withdraw", {"amount1": yuan(withdrawal.amount_fen), "thing2": (withdrawal.reason or "转账未完成")[:20]},
               at)


def distributor_status_changed(distributor: Distributor, frozen: bool, reason: str, event_id: int,
                               at: datetime | None = None) -> None:
    """A freeze or an unfreeze (``event_id``: its audit row). Without a
    template id for it, the WeChat message is a customer-service text,
    which WeChat delivers only within 48 hours of the user's last message."""
    if frozen:
        kind, title = K.DISTRIBUTOR_FROZEN, "分销资格已冻结"
        body = f"原因：{reason}。冻结期间新订单不产生佣金，也不能提现；已有佣金保留。如有疑问请联系商家"
    else:
        kind, title = K.DISTRIBUTOR_UNFROZEN, "分销资格已恢复"
        body = f"商家已恢复你的分销资格（{reason}），新订单起照常计算佣金，可以提现"
    user = distributor.user
    new = notify(user, kind, f"distributor:{distributor.id}:{kind.value}:{event_id}", title, body, "center",
                 {"thing1": reason[:20]}, at)
    if new and not settings.section("templates").get(kind.value) and user.is_subscribed:
        outbox.after_commit("wxbot.jobs.send_text", user.openid, f"{title}：{body}",
                            job_id=f"text-distributor-{distributor.id}-{event_id}")


def _buyer(order: Order) -> User | None:
    return db.session.get(User, order.buyer_id) if order.buyer_id is not None else None


def order_paid(order: Order, at: datetime | None = None) -> None:
    buyer = _buyer(order)
    if buyer is None:
        return
    notify(buyer, K.ORDER_PAID, f"buyer:{order.id}:paid", "付款成功",
           f"订单 {order.order_no}（{order.title}）已付款 ¥{yuan(order.total_fen)}，商家正在备货",
           f"orders/{order.order_no}", {"character_string1": order.order_no, "amount2": yuan(order.total_fen),
                                       "thing3": order.title[:20]}, at)


def order_shipped(order: Order, at: datetime | None = None) -> None:
    buyer = _buyer(order)
    if buyer is None:
        return
    notify(buyer, K.ORDER_SHIPPED, f"buyer:{order.id}:shipped", "订单已发货",
           f"订单 {order.order_no} 已由 {order.carrier} 发出，运单号 {order.tracking_no}",
           f"orders/{order.order_no}", {"character_string1": order.order_no, "thing2": (order.carrier or "")[:20],
                                       "character_string3": order.tracking_no or ""}, at)


def order_refunded(order: Order, refund_id: int, amount_fen: int, reason: str, whole: bool,
                   at: datetime | None = None, partial: bool = True) -> None:
    """One notice per refund that reached the buyer (a partial one too).
    ``whole``: the order is refunded; else ``partial`` says a part of it
    was, or (False) a payment the order could not keep was given back."""
    buyer = _buyer(order)
    if buyer is None:
        return
    what = "已全额退款" if whole else "已部分退款" if partial else "已退款"
    notify(buyer, K.ORDER_REFUNDED, f"buyer:refund:{refund_id}", "退款成功",
           f"订单 {order.order_no} {what} ¥{yuan(amount_fen)}，款项按原路退回。原因：{reason}",
           f"orders/{order.order_no}", {"character_string1": order.order_no, "amount2": yuan(amount_fen),
                                       "thing3": reason[:20]}, at)


def commission_clawed_back(distributor_id: int, order: Order, refund_id: int, amount_fen: int,
                           at: datetime | None = None) -> None:
    """A refund took ``amount_fen`` of this distributor's commission on ``order`` back."""
    distributor = db.session.get(Distributor, distributor_id)
    notify(distributor.user, K.COMMISSION_CLAWED_BACK, f"clawback:{refund_id}:{distributor_id}", "佣金因退款扣回",
           f"订单 {order.order_no} 退款，扣回佣金 ¥{yuan(amount_fen)}", "income",
           {"character_string1": order.order_no, "amount2": yuan(amount_fen)}, at)


def unread_count(user: User) -> int:
    return db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None)))


def list_for(user: User, limit: int = 50) -> list[Notification]:
    return list(db.session.scalars(select(Notification).where(Notification.user_id == user.id)
                                   .order_by(Notification.id.desc()).limit(limit)))


def mark_read(user: User, notification_id: int | None = None, at: datetime | None = None) -> int:
    """Mark one (or, without an id, every) notification of this user read."""
    query = update(Notification).where(Notification.user_id == user.id, Notification.read_at.is_(None))
    if notification_id is not None:
        query = query.where(Notification.id == notification_id)
    return db.session.execute(query.values(read_at=at or now()).execution_options(synchronize_session=False)).rowcount
