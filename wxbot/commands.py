"""The account's commands: menu CLICK keys and text keywords are the same.

Adding a command is adding one function with ``@command(KEY, 关键词…)``.
Each returns what the bot says: a text (links are ``<a href>`` tags, which
WeChat renders in a text message) or a wechatpy reply object. Because WeChat
renders tags there, every string a person chose (a nickname, a shop name, a
reason) goes into a text through ``shown()``: a nickname like
``<a href="http://evil">点我</a>`` arrives as text, not as a link.
"""
from __future__ import annotations

import html
from typing import Callable

from wechatpy.replies import ImageReply

from handlers import applications, commissions, outbox, referrals
from handlers import leaderboard as ranking
from handlers.money import yuan
from handlers.referrals import Touch
from handlers.settings import link
from models import ApplicationStatus, Distributor, TouchOutcome, Unit, User

Command = Callable[[User], object]
COMMANDS: dict[str, Command] = {}
KEYWORDS: dict[str, str] = {}


def command(key: str, *keywords: str):
    def register(fn: Command) -> Command:
        COMMANDS[key] = fn
        for word in (key, *keywords):
            KEYWORDS[word.lower()] = key
        return fn

    return register


def match(text: str) -> str | None:
    """The command a text message asks for, if it is one of ours."""
    return KEYWORDS.get(text.strip().lower())


def run(key: str, user: User) -> object | None:
    fn = COMMANDS.get(key)
    return fn(user) if fn else None


def shown(text: object) -> str:
    """A person's words inside a bot text: tags and entities escaped."""
    return html.escape(str(text or ""))


def unit_link(unit: Unit, text: str) -> str:
    return link(f"u/{unit.slug}", text)


def _become_one(what: str) -> str:
    return f"{what}\n成为分销商即可拥有：{link('apply', '申请成为分销商')}"


@command("SHOP", "商城", "购物", "买")
def shop(user: User) -> str:
    return f"欢迎光临！精选好物都在商城里，点这里开始逛：\n👉 {link('shop', '进入商城')}"


@command("MY_QRCODE", "我的二维码", "二维码", "海报")
def my_qrcode(user: User) -> object:
    distributor = referrals.distributor_of(user.id)
    if distributor is None:
        return _become_one("专属二维码海报是分销商的推广工具：朋友扫码关注后就归属于你，他们下单你就有佣金。")
    from .unit_jobs import poster_media_id

    media_id = poster_media_id(distributor.unit)
    if media_id:
        return ImageReply(media_id=media_id)
    # Uploading is an outbound call: never on the request path.
    outbox.after_commit("wxbot.unit_jobs.send_poster", user.openid, distributor.unit.id)
    return (f"你的专属海报正在生成，马上发给你📮\n邀请码：{distributor.unit.invite_code}\n"
            f"也可以在这里查看和保存：{link('qrcode', '我的二维码')}")


@command("APPLY", "申请分销", "申请", "分销商")
def apply(user: User) -> str:
    if referrals.distributor_of(user.id):
        return f"你已经是分销商啦，小店、海报和团队都在：{link('center', '分销中心')}"
    latest = applications.latest_application(user.id)
    if latest and latest.status == ApplicationStatus.PENDING.value:
        return f"你的申请正在审核中，结果会第一时间通知你。\n{link('apply', '查看申请进度')}"
    if latest and latest.status == ApplicationStatus.REJECTED.value:
        return (f"你上次的申请未通过，原因：{shown(latest.reject_reason)}\n"
                f"冷静期过后可重新申请：{link('apply', '查看并重新申请')}")
    return (
        "成为分销商，拥有自己的小店、二维码海报和邀请码，好友购买即可获得佣金。\n"
        f"👉 {link('apply', '填写申请')}（姓名、手机号、申请理由，一分钟完成）"
    )


@command("MY_INCOME", "我的收入", "收入", "佣金")
def my_income(user: User) -> str:
    distributor = referrals.distributor_of(user.id)
    if distributor is None:
        return _become_one("收入与提现仅对分销商开放：好友通过你的小店下单，你可获得佣金，"
                           "确认收货并过了退款期后即可提现。")
    b = commissions.balance_of(distributor.id)
    return (f"💰 我的收入（元）\n可提现：{yuan(b.withdrawable_fen)}\n冻结中：{yuan(b.frozen_fen)}\n"
            f"提现中：{yuan(b.reserved_fen)}\n已提现：{yuan(b.withdrawn_fen)}\n累计收入：{yuan(b.lifetime_fen)}\n"
            f"明细与提现：{link('income', '我的收入')}")


@command("LEADERBOARD", "排行榜", "排行")
def leaderboard(user: User) -> str:
    distributor = referrals.distributor_of(user.id)
    mine = distributor.unit.id if distributor and distributor.unit else None
    board = ranking.board("week", mine, top=5)
    lines = ["🏆 本周销售排行"]
    lines += [f"{r.rank}. {shown(ranking.mask(r.name))}  ¥{yuan(r.fen)}" for r in board.rows] or ["本周还没有销售"]
    if board.mine:
        behind = f"，距上一名 ¥{yuan(board.gap_fen)}" if board.gap_fen is not None else ""
        lines.append(f"我的排名：第 {board.mine.rank} 名（¥{yuan(board.mine.fen)}{behind}）")
    elif distributor:
        lines.append("我的排名：本周还没有销售")
    lines.append(f"今日、本月和总榜：{link('leaderboard', '查看排行榜')}")
    return "\n".join(lines)


@command("CENTER", "分销中心", "中心", "我的")
def center(user: User) -> str:
    distributor = referrals.distributor_of(user.id)
    if distributor is None:
        return _become_one("分销中心是分销商的主页：收入、团队、订单和二维码都在这里。")
    return (f"{shown(distributor.unit.name)}｜{'一级' if distributor.level == 1 else '二级'}分销商\n"
            f"收入、团队、订单、二维码都在这里：\n👉 {link('center', '进入分销中心')}")


@command("HELP", "帮助", "help", "?", "？", "菜单")
def help_(user: User) -> str:
    return (
        "您可以点击下方菜单，或直接发送以下文字：\n"
        "「商城」逛商城下单\n"
        "「我的二维码」领取推广海报\n"
        "「申请分销」成为分销商\n"
        "「我的收入」查看佣金与提现\n"
        "「排行榜」看销售排行\n"
        "「分销中心」进入个人中心\n"
        "「帮助」再看一次本说明\n"
        "朋友给了你邀请码？直接发送邀请码即可绑定。"
    )


def _shop_of(touch: Touch | None) -> Distributor | None:
    """The distributor whose code the user just used, if it names one."""
    if touch is None or touch.unit is None or touch.outcome in (TouchOutcome.UNKNOWN, TouchOutcome.MERCHANT):
        return None
    return touch.unit.distributor


def welcome(user: User, touch: Touch | None = None) -> str:
    owner = _shop_of(touch)
    if owner and touch.outcome is not TouchOutcome.SELF:
        return (f"{shown(user.display_name)}，欢迎关注！🎉\n{shown(owner.user.display_name)} 邀请你来逛逛"
                f"「{shown(touch.unit.name)}」：\n🛒 {unit_link(touch.unit, '进入小店')}\n"
                f"💰 {link('apply', '我也要开店赚佣金')}\n发送「帮助」查看全部功能。")
    return (
        f"{shown(user.display_name)}，欢迎关注！🎉\n"
        f"这里有品牌好物，也能边买边赚：\n🛒 {link('shop', '逛商城')}\n💰 {link('apply', '申请成为分销商')}\n"
        "发送「帮助」查看全部功能。"
    )


def scanned(user: User, touch: Touch) -> str:
    owner = _shop_of(touch)
    if owner is None:
        return f"{shown(user.display_name)}，欢迎回来！\n🛒 {link('shop', '逛商城')}"
    if touch.outcome is TouchOutcome.SELF:
        return f"这是你自己的小店二维码，分享给朋友吧！\n{link('qrcode', '我的二维码')}"
    return f"欢迎来到「{shown(touch.unit.name)}」！\n🛒 {unit_link(touch.unit, '进入小店')}"


INVITE_REPLIES = {
    TouchOutcome.ALREADY_OWNED: "你已经有推荐人了，推荐关系一经绑定不能更改。",
    TouchOutcome.SELF: "这是你自己的邀请码，发给朋友让他们绑定吧😊",
    TouchOutcome.DISTRIBUTOR: "你已经是分销商了，无需再绑定邀请码。",
    TouchOutcome.UNKNOWN: "没有找到这个邀请码，请核对后再发送（邀请码为 6 位字母和数字）。",
    TouchOutcome.MERCHANT: "没有找到这个邀请码，请核对后再发送。",
}


def invited(user: User, touch: Touch) -> str:
    if touch.outcome is TouchOutcome.BOUND:
        owner = touch.unit.distributor
        return (f"绑定成功！你的推荐人是 {shown(owner.user.display_name)}🎉\n"
                f"去逛逛「{shown(touch.unit.name)}」：{unit_link(touch.unit, '进入小店')}")
    return INVITE_REPLIES[touch.outcome]
