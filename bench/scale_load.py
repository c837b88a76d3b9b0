"""The brand-sized data set of bench/scale.py, streamed into PostgreSQL with COPY.

One pass of Python makes every row; each table has its own connection with
a ``COPY … FROM STDIN`` open, fed in big text chunks, so PostgreSQL parses
on the second core while Python writes. During the load the loaded tables
have no secondary indexes and no foreign keys (what pg_restore does); both
come back afterwards from their own definitions, the foreign keys validated
over the whole table at once. Every CHECK stays on throughout.

The shape: distributors are users 1..D (every tenth one level 2, hung under
a level-1 distributor picked with the same skew), the rest are customers,
70 % of them bound to a distributor picked with a Zipf-like weight 1/rank —
the first distributors have tens of thousands of customers, most have a few.
Orders (spread over the last year, ids in time order) are placed by customers
at their distributor's unit (the merchant's own unit for organic buyers and
guests), states by age; every paid order has its payment, every line of a
distributor's order its commission rows (level 2 to the parent), refunds for
refunded orders, balances equal to the rows, withdrawals out of what was
settled, applications, referral touches and unit visits.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import accumulate

UTC = timezone.utc
SURNAMES = "赵钱孙李周吴郑王冯陈褚卫蒋沈韩杨朱秦尤许何吕施张孔曹严华金魏陶姜"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰"
ADDRESS = "浙江省杭州市西湖区文三路 100 号"
DAY = 86400
FREEZE = 7 * DAY
CHUNK_ROWS = 20_000  # rows per COPY write


@dataclass
class Sizes:
    users: int
    distributors: int
    orders: int
    products: int = 30
    visits: int = 0  # 0: a fifth of the orders

    def check(self) -> None:
        if self.distributors < 20 or self.users < 2 * self.distributors or self.orders < 1000:
            raise SystemExit("sizes: at least 20 distributors, twice as many users, 1000 orders")


@dataclass
class Facts:
    """What the measurements need to know about the set."""

    now: datetime
    merchant_unit: int
    unit_of: dict = field(default_factory=dict)  # distributor id → unit id (only the few named below)
    biggest: int = 1  # distributor id with the most customers (level 1)
    biggest_user: int = 1
    biggest_mobile: str = ""
    biggest_name: str = ""
    biggest_slug: str = ""
    biggest_scene: str = ""
    customer: int = 0  # a customer of the biggest distributor
    heavy_buyer: int = 0  # a customer with many orders
    year_ago: str = ""
    yesterday: str = ""
    product_id: int = 1
    counts: dict = field(default_factory=dict)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NULL = "\\N"
_DAYS: dict[int, str] = {}


def ts(e: int) -> str:
    """Epoch seconds (UTC) as timestamptz text, without datetime objects (millions of them)."""
    d, s = divmod(e, 86400)
    day = _DAYS.get(d)
    if day is None:
        day = _DAYS[d] = (EPOCH + timedelta(days=d)).strftime("%Y-%m-%d ")
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{day}{h:02d}:{m:02d}:{s:02d}+00"


def tsn(e: int | None) -> str:
    return NULL if e is None else ts(e)


def nn(value) -> str:
    return NULL if value is None else str(value)


class Copier:
    """One table's COPY on its own connection, written in big chunks; a
    queued writer sends them from its own thread (without the GIL)."""

    def __init__(self, dsn: str, table: str, columns: list[str]) -> None:
        import psycopg
        from psycopg.copy import QueuedLibpqWriter

        self.table, self.columns, self.rows = table, columns, 0
        self.conn = psycopg.connect(dsn)
        self.conn.execute("SET synchronous_commit = off")
        self.buf: list[str] = []
        self.size = 0
        self.cursor = self.conn.cursor()
        self.copy_cm = self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN",
                                        writer=QueuedLibpqWriter(self.cursor))
        self.copy = self.copy_cm.__enter__()

    def add(self, line: str) -> None:
        """One row: tab-separated text (\\N for NULL), no newline."""
        self.buf.append(line)
        self.size += 1
        self.rows += 1
        if self.size >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buf:
            self.buf.append("")
            self.copy.write("\n".join(self.buf))
            self.buf, self.size = [], 0

    def close(self) -> int:
        self.flush()
        self.copy_cm.__exit__(None, None, None)
        self.conn.commit()
        self.conn.close()
        return self.rows


LOADED = ("products", "users", "distributors", "units", "applications", "referral_touches", "orders",
          "order_lines", "payments", "refunds", "commission_rows", "balances", "withdrawals", "unit_visits")


def strip_tables(conn) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Drop the loaded tables' secondary indexes and foreign keys; return
    their definitions to put back."""
    indexes = [row[0] for row in conn.execute(
        """SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
           WHERE c.relname = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)""",
        (list(LOADED),))]
    names = [row[0] for row in conn.execute(
        """SELECT ic.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
           WHERE c.relname = ANY(%s) AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)""",
        (list(LOADED),))]
    fkeys = [(r[0], r[1], r[2]) for r in conn.execute(
        """SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
           WHERE k.contype = 'f' AND c.relname = ANY(%s)""", (list(LOADED),))]
    for table, name, _ in fkeys:
        conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name in names:
        conn.execute(f'DROP INDEX "{name}"')
    conn.commit()
    return indexes, fkeys


def restore_tables(dsn: str, indexes: list[str], fkeys: list[tuple[str, str, str]], log) -> None:
    """Indexes built and foreign keys validated, two sessions at a time (two cores)."""
    import psycopg

    jobs = [("index", sql) for sql in indexes] + \
        [("fkey", f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}') for t, n, d in fkeys]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET maintenance_work_mem = '512MB'")
            conn.execute("SET max_parallel_maintenance_workers = 0")
            while True:
                with lock:
                    if not jobs or errors:
                        return
                    _, sql = jobs.pop(0)
                try:
                    conn.execute(sql)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    log(f"{len(indexes)} indexes built, {len(fkeys)} foreign keys validated")


def load(dsn: str, sizes: Sizes, seed: int, log) -> Facts:
    import psycopg

    rng = random.Random(seed)
    rand, randint = rng.random, rng.randint
    now_dt = datetime.now(UTC).replace(microsecond=0)
    now = int(now_dt.timestamp())
    with psycopg.connect(dsn) as conn:
        merchant_unit = conn.execute("SELECT id FROM units WHERE distributor_id IS NULL").fetchone()[0]
        unit_base = conn.execute("SELECT max(id) FROM units").fetchone()[0]
        indexes, fkeys = strip_tables(conn)
    facts = Facts(now=now_dt, merchant_unit=merchant_unit)
    D, U, N = sizes.distributors, sizes.users, sizes.orders
    t0 = time.perf_counter()

    def copier(table: str, columns: str) -> Copier:
        return Copier(dsn, table, columns.split())

    # -- products ---------------------------------------------------------------------------
    products = copier("products", "id name description images price_fen stock on_sale level1_rate_bp level2_rate_bp "
                                  "sort_order created_at")
    prices = [990 + 1000 * (i % 12) + 100 * i for i in range(sizes.products)]
    for i in range(sizes.products):
        special = i % 3 == 0
        products.add(f"{i + 1}\t商品{i + 1:02d}\t好东西\t[]\t{prices[i]}\t1000000\tt\t{1200 if special else NULL}\t"
                     f"{600 if special else NULL}\t{i % 5}\t{ts(now - 400 * DAY)}")
    products.close()

    # -- distributors, their users and units --------------------------------------------------
    # Level 2: every tenth distributor (never the first ten); its parent a level-1 one, by the same skew.
    level1 = [d for d in range(1, D + 1) if d % 10 or d < 10]
    level1_cum = list(accumulate(1 / k for k in range(1, len(level1) + 1)))
    level2 = list(range(10, D + 1, 10))
    parent = dict(zip(level2, rng.choices(level1, cum_weights=level1_cum, k=len(level2))))
    start_d = now - 730 * DAY
    unit_id = [unit_base + d for d in range(D + 1)]
    names = [""] + [rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=randint(1, 2))) for _ in range(D)]

    users = copier("users", "id openid nickname avatar_url subscription first_contact created_at subscribed_at "
                            "last_interaction_at referrer_id source attributed_at is_distributor")
    distributors = copier("distributors", "id user_id level parent_id parent_level status real_name mobile approved_at")
    units = copier("units", "id distributor_id name slug invite_code scene qr_status poster_version created_at")
    applications = copier("applications", "user_id real_name mobile reason status reject_reason decided_by "
                                          "created_at decided_at")
    touches = copier("referral_touches", "user_id unit_id source token outcome at")
    for d in range(1, D + 1):
        at = ts(start_d + 600 * DAY * d // D)
        joined = ts(start_d + 600 * DAY * d // D - 3 * DAY)
        p = parent.get(d)
        if p:  # brought by its parent (a distributor's user id is its own id)
            users.add(f"{d}\toSCALE{d:010d}dddddddddddd\t店主{d}\t{NULL}\tsubscribed\tsubscribe\t{joined}\t{joined}\t"
                      f"{at}\t{p}\tinvite\t{joined}\tt")
            distributors.add(f"{d}\t{d}\t2\t{p}\t1\tactive\t{names[d]}\t137{d:08d}\t{at}")
            touches.add(f"{d}\t{unit_id[p]}\tinvite\ti{p:07d}\tbound\t{joined}")
        else:
            users.add(f"{d}\toSCALE{d:010d}dddddddddddd\t店主{d}\t{NULL}\tsubscribed\tsubscribe\t{joined}\t{joined}\t"
                      f"{at}\t{NULL}\torganic\t{NULL}\tt")
            distributors.add(f"{d}\t{d}\t1\t{NULL}\t{NULL}\t{'frozen' if d % 997 == 500 else 'active'}\t{names[d]}\t"
                             f"137{d:08d}\t{at}")
        units.add(f"{unit_id[d]}\t{d}\t{names[d]}的小店\tu{d:09d}\ti{d:07d}\tsc{d:010d}\tready\t0\t{at}")
        applications.add(f"{d}\t{names[d]}\t137{d:08d}\t想分享好东西\tapproved\t{NULL}\tauto\t{at}\t{at}")
    facts.counts["distributors"] = distributors.close()
    units.close()
    facts.biggest, facts.biggest_user = 1, 1
    facts.biggest_mobile, facts.biggest_name, facts.biggest_slug = "13700000001", names[1], "u000000001"
    facts.biggest_scene = "sc0000000001"

    # Customers: 70 % bound by the skew; each bound one has the touch that bound them.
    dist_cum = list(accumulate(1 / k for k in range(1, D + 1)))
    customers = U - D
    start_u = now - 700 * DAY
    buyer_ref = [0] * (U + 1)  # user id → their distributor's id (0: organic)
    picks = rng.choices(range(1, D + 1), cum_weights=dist_cum, k=customers)
    for i, u in enumerate(range(D + 1, U + 1)):
        created = ts(start_u + 690 * DAY * i // customers)
        d = picks[i] if rand() < 0.7 else 0
        openid = f"oSCALE{u:010d}cccccccccccc"
        state = "subscribed" if u % 7 else "unsubscribed"
        if d:
            buyer_ref[u] = d
            if u & 1:
                users.add(f"{u}\t{openid}\t{NULL}\t{NULL}\t{state}\tsubscribe\t{created}\t{created}\t{created}\t{d}\t"
                          f"qr\t{created}\tf")
                touches.add(f"{u}\t{unit_id[d]}\tqr\tsc{d:010d}\tbound\t{created}")
            else:
                users.add(f"{u}\t{openid}\t{NULL}\t{NULL}\t{state}\toauth\t{created}\t{created}\t{created}\t{d}\t"
                          f"link\t{created}\tf")
                touches.add(f"{u}\t{unit_id[d]}\tlink\tu{d:09d}\tbound\t{created}")
            if u % 3 == 0:
                other = picks[i - 1]
                touches.add(f"{u}\t{unit_id[other]}\tlink\tu{other:09d}\talready\t{created}")
        else:
            users.add(f"{u}\t{openid}\t{NULL}\t{NULL}\t{state}\tsubscribe\t{created}\t{created}\t{created}\t{NULL}\t"
                      f"organic\t{NULL}\tf")
    # Applications waiting for review, and some refused: from customers, one open each.
    for k, u in enumerate(range(U, U - min(3000, customers // 10), -1)):
        created = ts(now - 3600 * k)
        name = rng.choice(SURNAMES) + rng.choice(GIVEN)
        if k % 3:
            applications.add(f"{u}\t{name}\t135{u:08d}\t想做分销\tpending\t{NULL}\t{NULL}\t{created}\t{NULL}")
        else:
            applications.add(f"{u}\t{name}\t135{u:08d}\t想做分销\trejected\t资料不全\t审核员\t{created}\t{created}")
    facts.counts["users"] = users.close()
    facts.counts["applications"] = applications.close()
    log(f"users, distributors, units, applications written ({time.perf_counter() - t0:.0f}s)")

    # -- orders and everything hanging off them ----------------------------------------------
    orders = copier("orders", "id order_no buyer_id guest_mobile unit_id distributor_id parent_distributor_id status "
                              "goods_fen total_fen receiver_name receiver_mobile receiver_address note pay_channel "
                              "transaction_id carrier holds_stock tracking_no cancel_reason created_at expires_at "
                              "paid_at shipped_at auto_confirm_at completed_at cancelled_at refunded_at refunded_fen")
    lines = copier("order_lines", "id order_id product_id name unit_price_fen quantity amount_fen level1_rate_bp "
                                  "level2_rate_bp")
    payments = copier("payments", "id order_id duplicate channel transaction_id amount_fen raw paid_at")
    refunds = copier("refunds", "id order_id payment_id origin partial out_refund_no amount_fen reason status "
                                "return_to created_at finished_at")
    rows = copier("commission_rows", "distributor_id order_id order_line_id level kind base_fen rate_bp amount_fen "
                                     "state settle_at created_at settled_at reversed_at")
    frozen = [0] * (D + 1)
    settled = [0] * (D + 1)
    heavy = D + 1
    facts.heavy_buyer = heavy
    start_o = now - 365 * DAY
    span = 365 * DAY
    n_products = sizes.products
    line_id = pay_id = refund_id = 0
    for k in range(1, N + 1):
        created = start_o + span * k // N - 1
        age = (now - created) / DAY
        r = rand()
        if k % 2000 == 0:
            buyer, guest = heavy, None
        elif r < 0.05:
            buyer, guest = None, f"139{rng.randrange(10**8):08d}"
        else:
            buyer, guest = randint(D + 1, U), None
        d = buyer_ref[buyer] if buyer else 0
        p = parent.get(d) if d else None
        s = rand()
        if s < 0.08:
            status = "pending" if age < 0.02 else "cancelled"
        elif s < 0.13:
            status = "refunded" if age > 6 else "refunding"
        elif s < 0.135 and age < 30:
            status = "refunding"
        elif age < 2:
            status = "paid" if s < 0.7 else "shipped"
        elif age < 10:
            status = "shipped" if s < 0.6 else "completed"
        else:
            status = "completed"
        paid = status not in ("pending", "cancelled")
        shipped_at = created + DAY if paid and status != "paid" and age > 1 else None
        completed_at = min(created + 4 * DAY, now - 300) if status == "completed" else None
        refunded_at = created + 5 * DAY if status == "refunded" else None
        c = ts(created)
        goods = 0
        my_lines = []
        l1, l2 = ("1000" if d else NULL), ("500" if p else NULL)
        for _ in range(2 if r > 0.85 else 1):
            pid = randint(1, n_products)
            qty = 1 if s < 0.7 else randint(1, 3)
            line_id += 1
            price = prices[pid - 1]
            amount = price * qty
            goods += amount
            my_lines.append((line_id, amount))
            lines.add(f"{line_id}\t{k}\t{pid}\t商品{pid:02d}\t{price}\t{qty}\t{amount}\t{l1}\t{l2}")
        mobile = guest or f"138{buyer:08d}"
        tx = f"4200{k:016d}" if paid else NULL
        channel = ("wechatpay", "alipay")[k % 4 == 0] if paid else NULL
        paid_at = created + 120 if paid else None
        pa = tsn(paid_at)
        if shipped_at:
            shipping = f"顺丰速运\t{'f' if status == 'refunded' else 't'}\tSF{k:012d}\t{NULL}"
        else:
            shipping = (f"{NULL}\t{'f' if status in ('cancelled', 'refunded') else 't'}\t{NULL}\t"
                        f"{'超时未付款' if status == 'cancelled' else NULL}")
        orders.add(f"{k}\t{c[2:4]}{c[5:7]}{c[8:10]}{k:012d}\t{nn(buyer)}\t{nn(guest)}\t"
                   f"{unit_id[d] if d else merchant_unit}\t{d or NULL}\t{nn(p)}\t{status}\t{goods}\t{goods}\t"
                   f"买家{k % 997}\t{mobile}\t{ADDRESS}\t\t{channel}\t{tx}\t{shipping}\t{c}\t{ts(created + 1800)}\t"
                   f"{pa}\t{tsn(shipped_at)}\t{tsn(shipped_at + 7 * DAY if shipped_at else None)}\t"
                   f"{tsn(completed_at)}\t{ts(created + 1800) if status == 'cancelled' else NULL}\t"
                   f"{tsn(refunded_at)}\t{goods if status == 'refunded' else 0}")
        if not paid:
            continue
        pay_id += 1
        payments.add(f"{pay_id}\t{k}\tf\t{channel}\t{tx}\t{goods}\t{{}}\t{pa}")
        if status in ("refunded", "refunding"):
            refund_id += 1
            asked = created + (4 * DAY if shipped_at else 0) + 3 * 3600
            refunds.add(f"{refund_id}\t{k}\t{pay_id}\tmerchant\tf\tRF{k:018d}\t{goods}\t七天无理由退货\t"
                        f"{'succeeded' if status == 'refunded' else 'pending'}\t"
                        f"{'completed' if shipped_at else 'paid'}\t{ts(asked)}\t{tsn(refunded_at)}")
        if not d:
            continue
        settle_at = completed_at + FREEZE if completed_at else None
        if status == "refunded":
            state, tail, book = "reversed", f"{NULL}\t{ts(refunded_at)}", None
        elif settle_at and settle_at <= now:
            state, tail, book = "withdrawable", f"{ts(settle_at)}\t{NULL}", settled
        else:
            state, tail, book = "frozen", f"{NULL}\t{NULL}", frozen
        sa = tsn(settle_at)
        for lid, amount in my_lines:
            fen = amount // 10
            rows.add(f"{d}\t{k}\t{lid}\t1\tcommission\t{amount}\t1000\t{fen}\t{state}\t{sa}\t{pa}\t{tail}")
            if book is not None:
                book[d] += fen
            if p:
                fen = amount // 20
                rows.add(f"{p}\t{k}\t{lid}\t2\tcommission\t{amount}\t500\t{fen}\t{state}\t{sa}\t{pa}\t{tail}")
                if book is not None:
                    book[p] += fen
        if k % 1_000_000 == 0:
            log(f"{k} orders written ({time.perf_counter() - t0:.0f}s)")
    for name, c in (("orders", orders), ("order_lines", lines), ("payments", payments), ("refunds", refunds),
                    ("commission_rows", rows)):
        facts.counts[name] = c.close()
    log(f"orders and their rows written ({time.perf_counter() - t0:.0f}s)")

    # -- balances and withdrawals out of what was settled -------------------------------------
    balances = copier("balances", "distributor_id frozen_fen withdrawable_fen reserved_fen withdrawn_fen lifetime_fen")
    withdrawals = copier("withdrawals", "id distributor_id request_key amount_fen fee_fen status method out_bill_no "
                                        "reason requested_at decided_at approved_by")
    w_id = 0
    for d in range(1, D + 1):
        withdrawn = reserved = 0
        if settled[d] >= 10000:
            count = max(1, min(24, settled[d] * 6 // 10 // 10000))
            each = settled[d] * 6 // 10 // count
            for j in range(count):
                w_id += 1
                at = now - 30 * DAY * (count - j) - 3600 * (d % 24)
                if j % 10 == 9:
                    withdrawals.add(f"{w_id}\t{d}\twk{w_id}\t{each}\t0\trejected\t{NULL}\t{NULL}\t信息有误\t{ts(at)}\t"
                                    f"{ts(at + 5 * 3600)}\t财务")
                else:
                    withdrawals.add(f"{w_id}\t{d}\twk{w_id}\t{each}\t0\tpaid\twechat_transfer\tW{w_id:020d}\t{NULL}\t"
                                    f"{ts(at)}\t{ts(at + 5 * 3600)}\t财务")
                    withdrawn += each
            if d % 7 == 0:
                w_id += 1
                reserved = max(1, (settled[d] - withdrawn) // 4)
                withdrawals.add(f"{w_id}\t{d}\twk{w_id}\t{reserved}\t0\trequested\t{NULL}\t{NULL}\t{NULL}\t"
                                f"{ts(now - 3600 * (d % 48))}\t{NULL}\t{NULL}")
        balances.add(f"{d}\t{frozen[d]}\t{settled[d] - withdrawn - reserved}\t{reserved}\t{withdrawn}\t{settled[d]}")
    balances.close()
    facts.counts["withdrawals"] = withdrawals.close()

    # -- unit visits, the last 90 days, skewed like the customers ------------------------------
    n_visits = sizes.visits or N // 5
    visits = copier("unit_visits", "unit_id product_id user_id visitor at")
    for i, d in enumerate(rng.choices(range(1, D + 1), cum_weights=dist_cum, k=n_visits)):
        u = randint(D + 1, U)
        visits.add(f"{unit_id[d]}\t{randint(1, n_products) if i & 1 else NULL}\t{u}\tu{u}\t"
                   f"{ts(now - 90 * DAY * (n_visits - i) // n_visits)}")
    facts.counts["unit_visits"] = visits.close()
    facts.counts["referral_touches"] = touches.close()
    log(f"all rows written ({time.perf_counter() - t0:.0f}s); building indexes and checking foreign keys")

    t1 = time.perf_counter()
    restore_tables(dsn, indexes, fkeys, log)
    log(f"indexes and foreign keys back in {time.perf_counter() - t1:.0f}s")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("products", "users", "distributors", "units", "applications", "referral_touches", "orders",
                      "order_lines", "payments", "refunds", "commission_rows", "withdrawals", "unit_visits"):
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        t1 = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("VACUUM (ANALYZE)")
        log(f"VACUUM ANALYZE in {time.perf_counter() - t1:.0f}s")
    facts.counts["customers_of_biggest"] = sum(1 for d in buyer_ref if d == 1)
    facts.customer = buyer_ref.index(1)
    return facts
