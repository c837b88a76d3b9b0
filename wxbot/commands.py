"""The account's commands: menu CLICK keys and text keywords are the same.

Adding a command is adding one function with ``@command(KEY, 关键词…)``.
Each returns what the bot says: a text (links are ``<a href>`` tags, which
WeChat renders in a text message) or a wechatpy reply object.
"""
from __future__ import annotations

from typing import Callable

from flask import current_app

from models import User

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


def page(path: str) -> str:
    return f"{current_app.config['SETTINGS']['app']['base_url']}/h5/{path.lstrip('/')}"


def link(path: str, text: str) -> str:
    return f'<a href="{page(path)}">{text}</a>'


@command("SHOP", "商城", "购物", "买")
def shop(user: User) -> str:
    return f"欢迎光临！精选好物都在商城里，点这里开始逛：\n👉 {link('shop', '进入商城')}"


@command("MY_QRCODE", "我的二维码", "二维码", "海报")
def my_qrcode(user: User) -> str:
    return (
        "专属二维码海报是分销商的推广工具：朋友扫码关注后就归属于你，"
        f"他们下单你就有佣金。\n成为分销商后即可领取：{link('apply', '申请成为分销商')}"
    )


@command("APPLY", "申请分销", "申请", "分销商")
def apply(user: User) -> str:
    return (
        "成为分销商，拥有自己的小店、二维码海报和邀请码，好友购买即可获得佣金。\n"
        f"👉 {link('apply', '填写申请')}（姓名、手机号、申请理由，一分钟完成）"
    )


@command("MY_INCOME", "我的收入", "收入", "佣金")
def my_income(user: User) -> str:
    return (
        "收入与提现仅对分销商开放：好友通过你的小店下单，你可获得佣金，"
        f"确认收货并过了退款期后即可提现。\n{link('apply', '申请成为分销商')}"
    )


@command("LEADERBOARD", "排行榜", "排行")
def leaderboard(user: User) -> str:
    return f"看看谁是本周销售冠军：\n🏆 {link('leaderboard', '查看排行榜')}"


@command("CENTER", "分销中心", "中心", "我的")
def center(user: User) -> str:
    return f"分销中心：收入、团队、订单、二维码都在这里。\n👉 {link('center', '进入分销中心')}"


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
        "「帮助」再看一次本说明"
    )


def welcome(user: User) -> str:
    return (
        f"{user.display_name}，欢迎关注！🎉\n"
        f"这里有品牌好物，也能边买边赚：\n🛒 {link('shop', '逛商城')}\n💰 {link('apply', '申请成为分销商')}\n"
        "发送「帮助」查看全部功能。"
    )
