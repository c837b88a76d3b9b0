"""The distributor's money pages: income, withdrawals, and the notification
centre (which every user has)."""
from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for

from handlers import commissions, notifications, outbox, settings, withdrawals
from handlers.errors import DomainError
from handlers.money import to_fen
from models import Notification, db

from . import bp
from .auth import current_user, login_required
from .distribution import _distributor_or_apply


@bp.get("/income")
@login_required
def income():
    d = _distributor_or_apply()
    days = commissions.income_by_day(d.id)
    peak = max([amount for _, amount in days] + [1])
    return render_template("income/income.html", d=d, balance=commissions.balance_of(d.id), days=days, peak=peak,
                           rows=commissions.rows_of(d.id), unread=notifications.unread_count(d.user))


@bp.route("/withdraw", methods=["GET", "POST"])
@login_required
def withdraw():
    d = _distributor_or_apply()
    error = None
    if request.method == "POST":
        try:
            w = withdrawals.request_withdrawal(d, to_fen(request.form.get("amount", "")),
                                               request.form.get("request_key", ""))
            outbox.commit()
            return redirect(url_for("h5.withdraw", sent=w.id))
        except DomainError as exc:
            outbox.rollback()
            error = exc.message
    rules = settings.section("distribution")
    history = withdrawals.of_distributor(d.id)
    sent = next((w for w in history if str(w.id) == request.args.get("sent")), None) if not error else None
    return render_template("income/withdraw.html", d=d, balance=commissions.balance_of(d.id), rules=rules,
                           history=history, sent=sent, request_key=withdrawals.new_request_key(),
                           error=error, typed=request.form.get("amount", "")), 400 if error else 200


@bp.get("/withdrawals/<id:withdrawal_id>/confirm")
@login_required
def confirm_transfer(withdrawal_id: int):
    """The distributor confirms a WeChat Pay transfer (requestMerchantTransfer)."""
    d = _distributor_or_apply()
    w = withdrawals.get(withdrawal_id)
    if w.distributor_id != d.id:
        abort(404)
    if w.status != "transferring" or not w.package_info:
        return redirect(url_for("h5.withdraw"))  # nothing to confirm (yet, or any more)
    if not withdrawals.may_confirm(w):
        return render_template("message.html", title="暂不能收款",
                               message="有退款扣回的佣金待抵扣，这笔转账暂不能确认收款。抵扣完成后再来确认；"
                                       "未确认的转账到期会自动退回你的余额。",
                               action_url=url_for("h5.income"), action_text="查看收入"), 409
    settings = current_app.config["SETTINGS"]
    return render_template("income/confirm.html", w=w, mchid=settings["wechatpay"]["mchid"],
                           appid=settings["wechatpay"]["appid"], sandbox=settings["wechatpay"]["sandbox"])


@bp.get("/notifications")
@login_required
def notification_centre():
    user = current_user()
    return render_template("income/notifications.html", items=notifications.list_for(user),
                           unread=notifications.unread_count(user))


@bp.post("/notifications/read")
@login_required
def read_all():
    notifications.mark_read(current_user())
    outbox.commit()
    return redirect(url_for("h5.notification_centre"))


@bp.post("/notifications/<id:notification_id>/open")
@login_required
def open_notification(notification_id: int):
    user = current_user()
    item = db.session.get(Notification, notification_id)
    if item is None or item.user_id != user.id:
        abort(404)
    notifications.mark_read(user, notification_id)
    outbox.commit()
    return redirect(item.url or url_for("h5.notification_centre"))
