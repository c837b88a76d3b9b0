"""Exports (admin 导出): every list as CSV, with the list's own filters and
query, all pages of it in the list's order.

A list registers once (``register``): its name, the permission that shows
the list, the filter names its page reads, Chinese column headers and a
function from the filters to the rows (it checks the filters at once, a
DomainError for bad input, and returns an iterable of cell sequences).

An export of up to ``STREAM_LIMIT`` rows is answered at once; a larger one
is an ``Export`` row written to a file under ``[admin] exports_dir`` by a
background job (after the commit, as handlers.outbox does), listed on the
asker's download page and removed after ``KEEP`` (``expire``). The list
page's form carries a one-time ``request_key``: a double click finds the
first export again instead of starting a second job. Every export and every
download of a file is audited.

The CSV is UTF-8 with a BOM (Excel then reads Chinese), every cell quoted,
and a cell beginning with = + - @, a tab or a carriage return gets a leading
single quote so a spreadsheet shows it as text instead of running it
(OWASP's advice on CSV injection).
"""
from __future__ import annotations

import csv
import io
import itertools
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from models import Export, ExportState, db
from models.order import STATUS_TEXT

from . import (application_queue, audit, catalogue, distributor_pages, order_search, order_story, outbox, reconcile,
               rules, settings, withdrawals)
from . import staff as staff_rules
from .clock import CHINA, now
from .errors import DomainError, Forbidden, NotFound
from .money import yuan

BOM = "\ufeff"
STREAM_LIMIT = 5000           # more rows than this become a background job
BATCH = 500                   # rows read per query while exporting
KEEP = timedelta(days=7)      # a file is removed this long after it was written
DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
QUEUED, DONE, FAILED, EXPIRED = (s.value for s in ExportState)
STATE_NAMES = {QUEUED: ("生成中", "warning"), DONE: ("可下载", "success"), FAILED: ("失败", "danger"),
               EXPIRED: ("已过期", "info")}

Rows = Callable[[Mapping[str, str]], Iterable[Sequence[Any]]]


@dataclass(frozen=True)
class Source:
    name: str
    title: str                 # the list's Chinese name, in file names and on the download page
    permission: str            # who may see the list may export it (with the ``exports`` permission)
    fields: tuple[str, ...]    # the query arguments the list page filters by
    headers: tuple[str, ...]
    rows: Rows


SOURCES: dict[str, Source] = {}


def register(name: str, *, title: str, permission: str, fields: Sequence[str], headers: Sequence[str],
             rows: Rows) -> Source:
    """Make a list exportable; called once at import by the module that owns the list."""
    if permission not in staff_rules.PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")
    source = Source(name, title, permission, tuple(fields), tuple(headers), rows)
    SOURCES[name] = source
    return source


def new_request_key() -> str:
    """The export form's one-time key (``export``'s ``request_key``)."""
    return secrets.token_urlsafe(16)


# -- the CSV --------------------------------------------------------------------------

def inert(value: Any) -> str:
    """A cell as text a spreadsheet shows and never runs."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(DANGEROUS) else text


def lines(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV as chunks of text: the BOM and the header, then rows a batch at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow([inert(h) for h in headers])
    yield BOM + buffer.getvalue()
    for batch in _batched(rows):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([inert(cell) for cell in row] for row in batch)
        yield buffer.getvalue()


def _batched(rows: Iterable[Sequence[Any]]) -> Iterator[list[Sequence[Any]]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


def file_name(source: Source, at: datetime) -> str:
    return f"{source.title}-{at.astimezone(CHINA):%Y%m%d-%H%M}.csv"


# -- asking for an export ----------------------------------------------------------------

@dataclass(frozen=True)
class Small:
    """An export answered at once: its rows are already read."""

    source: Source
    rows: list[Sequence[Any]]
    file_name: str


def source_of(name: str, role: str) -> Source:
    source = SOURCES.get(name or "")
    if source is None:
        raise NotFound("没有这个可导出的列表")
    if not (staff_rules.may(role, "exports") and staff_rules.may(role, source.permission)):
        raise Forbidden("你的角色不能导出这个列表")
    return source


def given(source: Source, args: Mapping[str, str]) -> dict[str, str]:
    """The list's filters from a form or query string, stripped, empty ones left out (as the page reads them)."""
    out = {}
    for name in source.fields:
        value = args.get(name) or ""
        value = value.strip()[:64] if isinstance(value, str) else ""
        if value:
            out[name] = value
    return out


def export(name: str, args: Mapping[str, str], actor: audit.Actor, request_key: str = "",
           at: datetime | None = None) -> Small | Export:
    """Export list ``name`` with the filters in ``args``: a Small one to send
    at once, or the Export whose job writes the file after the caller commits."""
    at = at or now()
    source = source_of(name, actor.role)
    if not KEY.match(request_key or ""):
        raise DomainError("导出请求已失效，请刷新页面后再导出")
    earlier = db.session.scalars(select(Export).where(Export.request_key == request_key)).one_or_none()
    if earlier is not None:
        return _same_asker(earlier, actor)
    filters = given(source, args)
    found = iter(source.rows(filters))  # bad filters are refused here, before anything is written
    first = list(itertools.islice(found, STREAM_LIMIT + 1))
    if len(first) <= STREAM_LIMIT:
        audit.record(actor, "export.download", "export", name, after={"list": name, "filters": filters,
                                                                      "rows": len(first)}, at=at)
        return Small(source, first, file_name(source, at))
    expire(at)
    job = Export(request_key=request_key, staff_id=actor.staff_id, source=name, filters=filters, state=QUEUED,
                 created_at=at, file_name=file_name(source, at))
    try:
        with db.session.begin_nested():
            db.session.add(job)
    except IntegrityError:  # the other click of a double click won
        return _same_asker(db.session.scalars(select(Export).where(Export.request_key == request_key)).one(),
                           actor)
    audit.record(actor, "export.create", "export", job.id, after={"list": name, "filters": filters}, at=at)
    outbox.after_commit("handlers.exports.build", job.id, job_id=f"export-{job.id}")
    return job


def _same_asker(job: Export, actor: audit.Actor) -> Export:
    if job.staff_id != actor.staff_id:
        raise DomainError("导出请求已失效，请刷新页面后再导出")
    return job


# -- the background job -----------------------------------------------------------------

def exports_dir() -> Path:
    """``[admin] exports_dir``, else ``<instance path>/exports`` (var/exports)."""
    configured = settings.section("admin")["exports_dir"]
    return Path(configured) if configured else Path(current_app.instance_path) / "exports"


@outbox.job
def build(export_id: int) -> None:
    """Write one queued export's file (once: a done or failed one is left alone)."""
    job = db.session.scalars(select(Export).where(Export.id == export_id).with_for_update()).one_or_none()
    if job is None or job.state != QUEUED:
        return
    source, folder = SOURCES.get(job.source), exports_dir()
    stored = f"{job.id}-{secrets.token_hex(8)}.csv"
    part = folder / (stored + ".part")
    try:
        if source is None:
            raise DomainError("这个列表已不能导出")
        folder.mkdir(parents=True, exist_ok=True)
        counted = _Counted(source.rows(job.filters or {}))
        with open(part, "w", encoding="utf-8", newline="") as out:
            for chunk in lines(source.headers, counted):
                out.write(chunk)
        part.replace(folder / stored)
    except (DomainError, OSError) as exc:
        part.unlink(missing_ok=True)
        job = db.session.get(Export, export_id)
        job.state, job.message, job.finished_at = FAILED, str(exc)[:500], now()
        outbox.note_error(f"export {export_id}: {exc}")
        return
    job = db.session.get(Export, export_id)  # loaded again: the rows were let go of as they were written
    job.state, job.rows, job.size, job.stored = DONE, counted.n, (folder / stored).stat().st_size, stored
    job.finished_at = now()
    job.expires_at = job.finished_at + KEEP


class _Counted:
    """The job's rows, counted; the session forgets the objects read after
    each batch is written, so a long export does not keep them all in memory."""

    def __init__(self, rows: Iterable[Sequence[Any]]):
        self.rows, self.n = rows, 0

    def __iter__(self):
        for row in self.rows:
            self.n += 1
            if self.n % BATCH == 0:
                db.session.expunge_all()
            yield row


def expire(at: datetime | None = None) -> int:
    """Remove the files older than ``KEEP``; their rows stay, as expired."""
    at = at or now()
    old = list(db.session.scalars(select(Export).where(Export.state.in_([DONE, FAILED]), Export.expires_at < at)
                                  .limit(500)))
    for job in old:
        if job.stored:
            (exports_dir() / job.stored).unlink(missing_ok=True)
        job.state = EXPIRED
    db.session.flush()
    return len(old)


@outbox.job
def expire_job() -> int:
    """For a nightly schedule: ``expire`` in its own transaction."""
    return expire()


# -- the download page -------------------------------------------------------------------

def mine(actor: audit.Actor, limit: int = 50) -> list[Export]:
    """The staff member's exports, newest first."""
    return list(db.session.scalars(select(Export).where(Export.staff_id == actor.staff_id)
                                   .order_by(Export.id.desc()).limit(limit)))


def get_mine(export_id: int, actor: audit.Actor) -> Export:
    job = db.session.get(Export, export_id)
    if job is None or job.staff_id != actor.staff_id:  # another's export is as good as absent
        raise NotFound("没有这个导出")
    return job


def download(export_id: int, actor: audit.Actor, at: datetime | None = None) -> tuple[Path, str]:
    """The file of one's own finished export and its download name; audited."""
    at = at or now()
    job = get_mine(export_id, actor)
    source_of(job.source, actor.role)  # a role changed since is refused
    if job.state == QUEUED:
        raise DomainError("文件还在生成，请稍后再下载")
    if job.state == FAILED:
        raise DomainError(f"导出失败：{job.message}")
    path = exports_dir() / job.stored
    if job.state == EXPIRED or (job.expires_at and job.expires_at < at) or not path.is_file():
        raise DomainError(f"文件已过期（保留 {KEEP.days} 天），请重新导出")
    audit.record(actor, "export.download", "export", job.id, after={"list": job.source, "rows": job.rows}, at=at)
    return path, job.file_name


def title_of(name: str) -> str:
    source = SOURCES.get(name)
    return source.title if source else name


# -- the lists ---------------------------------------------------------------------------

def _when(value: datetime | None) -> str:
    return value.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _pages(fetch: Callable[[int | None, int], Sequence[Any]]) -> Iterator[Any]:
    """Every row of a keyset-paged list: ``fetch(cursor, limit)`` returns up
    to ``limit + 1`` rows from ``cursor`` on (as the page asks), each with an ``id``."""
    cursor = None
    while True:
        rows = list(fetch(cursor, BATCH))
        yield from rows[:BATCH]
        if len(rows) <= BATCH:
            return
        cursor = rows[BATCH - 1].id


def _application_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    chosen = application_queue.parse_filters(filters)
    newest = chosen.order != "oldest"
    found = _pages(lambda cursor, limit: application_queue.list_queue(
        chosen, before=cursor if newest else None, after=None if newest else cursor, limit=limit))
    return ((r.application.id, r.application.real_name, r.application.mobile, r.user.display_name,
             r.inviter.real_name if r.inviter else "", r.source_name, r.first_contact_name,
             _when(r.application.created_at), r.age, r.status_name, r.application.decided_by or "",
             _when(r.application.decided_at), r.application.reject_reason or "") for r in found)


def _withdrawal_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    withdrawals.listing(dict(filters), None, 0)  # the filters checked now, not at the first row
    found = _pages(lambda cursor, limit: withdrawals.listing(dict(filters), cursor, limit).rows)
    return ((r.withdrawal.id, r.distributor.real_name, r.distributor.mobile, yuan(r.withdrawal.amount_fen),
             yuan(r.withdrawal.fee_fen), yuan(r.withdrawal.net_fen),
             WITHDRAWAL_STATES.get(r.withdrawal.status, r.withdrawal.status),
             withdrawals.METHOD_NAMES.get(r.withdrawal.method or "", r.withdrawal.method or ""),
             _when(r.withdrawal.requested_at)) for r in found)


def _order_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    chosen = order_search.parse_filters(filters)
    found = _pages(lambda cursor, limit: order_search.search(chosen, before=cursor, limit=limit + 1))
    return ((r.order.order_no, _when(r.order.created_at), _when(r.order.paid_at), r.order.receiver_name,
             r.order.receiver_mobile, r.items, yuan(r.order.total_fen),
             ORDER_STATES.get(r.order.status, r.order.status), r.unit_name, r.distributor_name or "", order_story.CHANNELS.get(r.order.pay_channel or "", ""))
            for r in found)


def _product_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    found = _pages(lambda cursor, limit: catalogue.products_page(shelf=filters.get("shelf"), search=filters.get("q"),
                                                                before_id=cursor, limit=limit))
    return _products(found, settings.section("distribution"))


def _products(found: Iterator[Any], rules: Mapping[str, Any]) -> Iterator[Sequence[Any]]:
    def rate(own: int | None, default: int) -> str:  # as the list shows it: the shop's default when unset
        return catalogue.percent(default) + "（默认）" if own is None else catalogue.percent(own)

    for batch in _batched(found):
        sold = catalogue.sold_counts([p.id for p in batch])
        for p in batch:
            yield (p.id, p.name, yuan(p.price_fen), p.stock, sold.get(p.id, 0), "上架" if p.on_sale else "下架",
                   p.sort_order, rate(p.level1_rate_bp, rules["level1_rate_bp"]),
                   rate(p.level2_rate_bp, rules["level2_rate_bp"]))


def _audit_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    audit.search(filters, limit=0)  # the dates checked now
    found = _pages(lambda cursor, limit: audit.search(filters, before_id=cursor, limit=limit + 1))
    return ((e.id, _when(e.at), e.actor, e.action, e.target_type, e.target_id, e.reason, e.ip) for e in found)


def _distributor_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    found = distributor_pages.rows_for_export(dict(filters))
    first = next(found, None)  # the filters checked now, not at the first row written
    rows = found if first is None else itertools.chain([first], found)
    return ((r.distributor.id, r.distributor.real_name, r.distributor.mobile, f"{r.distributor.level} 级",
             r.parent.real_name if r.parent else "", r.unit.invite_code or "",
             "冻结" if r.distributor.status == "frozen" else "正常", _when(r.distributor.approved_at),
             r.figures.customers, r.figures.level2, yuan(r.figures.gross_fen), yuan(r.figures.net_fen),
             yuan(r.figures.frozen_fen), yuan(max(0, r.figures.withdrawable_fen)), yuan(r.figures.withdrawn_fen),
             yuan(r.figures.owed_fen)) for r in rows)


def _difference_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    day = reconcile.parse_day(filters.get("day", ""))
    _, diffs = reconcile.day_detail(day)

    def amount(fen: int | None) -> str:
        return "" if fen is None else yuan(fen)

    return ((d.id, d.day.isoformat(), reconcile.CHANNELS.get(d.channel, d.channel),
             reconcile.KIND_NAMES.get(d.kind, d.kind), d.ref, d.gateway_id or "",
             reconcile.PROBLEM_NAMES.get(d.problem, d.problem), amount(d.gateway_fen), d.gateway_state or "",
             amount(d.local_fen), d.local_state or "", "已处理" if d.resolved_at else "待处理", d.note or "",
             d.resolved_by or "", _when(d.resolved_at)) for d in diffs)


def _rule_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    key = filters.get("key") or None
    if key is not None and key not in rules.RULES:
        raise DomainError("没有这条规则")
    at = now()
    current = rules.in_effect_ids(at)
    found = _pages(lambda cursor, limit: rules.history(key, cursor, limit))
    return ((v.id, v.revision, rules.RULES[v.key].label if v.key in rules.RULES else v.key,
             rules.show(v.key, v.value) if v.key in rules.RULES else v.value, _when(v.effective_from),
             rules.STATE_TEXT[rules.state_of(v, current, at)], v.created_by, v.reason, _when(v.created_at),
             v.cancelled_by or "", _when(v.cancelled_at)) for v in found)


def _staff_rows(filters: Mapping[str, str]) -> Iterator[Sequence[Any]]:
    last = staff_rules.last_logins()
    return ((m.id, m.name, staff_rules.ROLE_NAMES.get(m.role, m.role), "已开启" if m.has_2fa else "未开启",
             "正常" if m.is_active else "已停用", _when(m.disabled_at), _when(last.get(m.id)) or "从未登录")
            for m in staff_rules.all_staff())


WITHDRAWAL_STATES = {"requested": "待处理", "transferring": "转账中", "paid": "已打款", "rejected": "已驳回",
                     "failed": "转账未成功"}  # as admin/withdrawals.py STATUS_NAMES
ORDER_STATES = {status.value: text for status, text in STATUS_TEXT.items()}

register("applications", title="分销申请", permission="applications.view",
         fields=("status", "q", "date_from", "date_to", "order"),
         headers=("编号", "姓名", "手机号", "微信昵称", "邀请人", "来源", "首次接触", "申请时间", "等待时长", "状态",
                  "处理人", "处理时间", "驳回理由"), rows=_application_rows)
register("withdrawals", title="提现", permission="withdrawals.view", fields=("state", "q", "from", "to"),
         headers=("编号", "分销商", "手机号", "提现金额（元）", "手续费（元）", "实付（元）", "状态", "打款方式",
                  "申请时间"), rows=_withdrawal_rows)
register("orders", title="订单", permission="orders.view", fields=order_search.FIELDS,
         headers=("订单号", "下单时间", "付款时间", "收货人", "手机号", "商品", "金额（元）", "状态", "店铺", "分销商",
                  "支付方式"), rows=_order_rows)
register("products", title="商品", permission="products.view", fields=("shelf", "q"),
         headers=("编号", "名称", "价格（元）", "库存", "已售", "状态", "排序", "一级佣金", "二级佣金"), rows=_product_rows)
register("audit", title="操作日志", permission="audit.view", fields=audit.FILTERS,
         headers=("编号", "时间", "操作人", "操作", "对象类型", "对象编号", "原因", "IP"), rows=_audit_rows)
register("distributors", title="分销商", permission="distributors.view",
         fields=("level", "state", "from", "to", "parent", "q"),
         headers=("编号", "姓名", "手机号", "级别", "上级", "邀请码", "状态", "加入时间", "客户数", "二级数", "销售额（元）",
                  "净销售额（元）", "冻结佣金（元）", "可提现（元）", "已提现（元）", "待抵扣（元）"), rows=_distributor_rows)
register("reconcile", title="对账差异", permission="reconcile.view", fields=("day",),
         headers=("编号", "日期", "渠道", "类型", "单号", "支付平台单号", "差异", "支付平台金额（元）", "支付平台状态",
                  "本系统金额（元）", "本系统状态", "处理状态", "处理说明", "处理人", "处理时间"), rows=_difference_rows)
register("staff", title="员工", permission="staff.manage", fields=(),
         headers=("编号", "用户名", "角色", "两步验证", "状态", "停用时间", "最近登录"), rows=_staff_rows)
register("rules", title="规则修改记录", permission="rules.view", fields=("key",),
         headers=("编号", "版本", "规则", "新值", "生效时间", "状态", "修改人", "原因", "保存于", "撤销人", "撤销时间"),
         rows=_rule_rows)
