"""Seeded synthetic transaction generator for the `aml-risk` model.

No real anti-money-laundering data can be had (none ships in any package), so this module
simulates the accounts of a bank branch's customers and injects known laundering typologies
into some of them. Everything is driven by one `numpy.random.Generator` seeded by the caller:
the same seed gives the same transactions, features and labels, byte for byte.

Simulation
----------
* `N_CUSTOMERS` = 215 customers over `SIM_DAYS` = 90 days. The first `WARMUP_DAYS` = 30 days
  only build up each customer's history (known counterparties, the 24 h / 48 h / 7 day
  windows) and are dropped; the remaining 60 days (~20,000 transactions) are the data set.
* Segments: 80 % retail, 20 % small business. Each customer has an established pool of
  counterparties (retail 4-12, business 10-40) that counts as "known" from day 0, as does
  the home branch (`branch-0`); other branches are new at the first visit.
* Normal behaviour (label 0), per customer:
  - retail: Poisson arrivals at 0.4-1.4 per day, each placed between 07:00 and 22:00:
    15 % ATM cash withdrawals (multiples of 20, up to 1,000); 5 % large transfers in or out
    (savings, tax, loans: log-normal median 4,000, 1,000-40,000, 40 % rounded to 1,000);
    the rest payments (12 % in) with a log-normal amount around a personal median of 15-150;
    a monthly salary in (1,500-6,500, not round) and a monthly rent out (multiple of 50),
    half of the time within 1-8 hours of the salary (benign in-out);
  - business: 1.5-4 per day, 55 % in; a personal median of 200-5,000; 25 % of the incoming
    are cash takings at branches 0-2, 8 % of those legitimately 8,000-9,990; 10 % of the
    outgoing are round supplier payments (1,000-15,000);
  - 8 % of ordinary payments go to a new counterparty; 2 % (retail) / 6 % (business) are
    cross-border;
  - benign look-alikes: 6 % of retail customers are marketplace sellers (about 3 small
    payments a day, 20-400, from new buyers, 10 % from abroad; 12 % of the time the takings
    go on to their savings within 0.5-10 h: fan-in plus pass-through); 10 % of retail
    customers send money home every month (cross-border, 60 % round hundreds, 30 % via
    cash); 8 % of all customers make one large round purchase (3,000-25,000) from a new
    counterparty.
* Suspicious customers (`SUSPICIOUS_SHARE` = 20 % of customers) carry 1-3 episodes, each
  with a typology drawn uniformly from the five below, starting at a uniform time inside the
  kept window. Every transaction of an episode is labelled 1; the customer's ordinary
  transactions stay 0. About 2.5-3 % of the kept transactions are suspicious.

Typologies (parameters as implemented below)
--------------------------------------------
1. `structuring`: 3-6 cash deposits of 6,000-9,990 each (multiples of 10, under the 10,000
   reporting threshold `THRESHOLD`) at branches 0-5 within 6-48 h; in half of the episodes the
   total then leaves by a transfer (50 % cross-border) within 1-3 days.
2. `rapid_in_out` (pass-through / money mule): one incoming transfer of 1,000-60,000
   (log-normal, median 8,000) from a new counterparty (70 %; else a known one), 40 %
   cross-border, followed within 10 min - 6 h by 1-3 outgoing transfers totalling 90-99 %
   of it to new counterparties (60 % cross-border).
3. `round_amounts`: 3-8 transfers in or out, each a multiple of 1,000 between 2,000 and
   20,000, within 1-5 days; 60 % to/from new counterparties, 30 % cross-border.
4. `fan_in` (many new counterparties / funnel account): 6-20 incoming transfers of
   100-3,000 from distinct new counterparties (20 % cross-border) within 1-5 days, then 1-2
   outgoing transfers or cash withdrawals (30 %) of 85-100 % of the total within a day
   (transfers 50 % cross-border).
5. `cash_to_wire` (cross-border / cash bias): 2-4 cash deposits of 1,000-8,000 within 1-3
   days, then one cross-border wire of 90-100 % of the sum to a new counterparty.

Features (per transaction, computed causally from the customer's own history up to and
including the transaction itself; windows are [t - w, t]; `FEATURES` gives the column order)
--------------------------------------------------------------------------------------------
 0 `log_amount`              ln(1 + amount)
 1 `is_round`                1 if amount >= 1,000 and a multiple of 1,000
 2 `just_below_threshold`    1 if 0.8 * 10,000 <= amount < 10,000
 3 `is_cash`                 1 for cash deposits / withdrawals
 4 `is_cross_border`         1 if the counterparty is abroad
 5 `is_incoming`             1 for money in, 0 for money out
 6 `new_counterparty`        1 if the customer never dealt with this counterparty before
 7 `log_count_24h`           ln(1 + number of the customer's transactions in the last 24 h)
 8 `log_sum_24h`             ln(1 + sum of their amounts in the last 24 h)
 9 `log_minutes_since_prev`  ln(1 + minutes since the customer's previous transaction;
                             30 days if there is none)
10 `flow_through_48h`        min(in, out) / max(in, out) of the customer's money in the
                             last 48 h (0 if either is 0): ~1 when money passes straight through
11 `log_new_cp_7d`           ln(1 + number of first contacts with new counterparties in the
                             last 7 days)

The model takes these 12 raw values as float32 (its first layer holds the standardization).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass

import numpy as np

N_CUSTOMERS = 215
SIM_DAYS = 90
WARMUP_DAYS = 30
SUSPICIOUS_SHARE = 0.20
THRESHOLD = 10_000.0
MIN_PER_DAY = 24 * 60

FEATURES = [
    "log_amount",
    "is_round",
    "just_below_threshold",
    "is_cash",
    "is_cross_border",
    "is_incoming",
    "new_counterparty",
    "log_count_24h",
    "log_sum_24h",
    "log_minutes_since_prev",
    "flow_through_48h",
    "log_new_cp_7d",
]

TYPOLOGIES = ["structuring", "rapid_in_out", "round_amounts", "fan_in", "cash_to_wire"]


@dataclass
class Tx:
    customer: int
    t: float  # minutes since the start of the simulation
    amount: float
    incoming: bool
    cash: bool
    cross_border: bool
    counterparty: str
    label: int
    typology: str  # "" for normal behaviour


class _Customer:
    def __init__(self, cid: int, rng: np.random.Generator):
        self.cid = cid
        self.business = rng.random() < 0.2
        pool = int(rng.integers(10, 41) if self.business else rng.integers(4, 13))
        self.known = [f"c{cid}-k{i}" for i in range(pool)]
        self.n_new = 0
        self.rate = rng.uniform(1.5, 4.0) if self.business else rng.uniform(0.4, 1.4)
        self.median = math.exp(
            rng.uniform(math.log(200), math.log(5000))
            if self.business
            else rng.uniform(math.log(15), math.log(150))
        )
        self.salary = round(rng.uniform(1500, 6500), 2)
        self.rent = 50.0 * int(rng.integers(10, 41))
        self.pay_day = int(rng.integers(0, 28))
        # benign profiles that look like typologies
        self.seller = (not self.business) and rng.random() < 0.06  # online marketplace seller
        self.remitter = (not self.business) and rng.random() < 0.10  # sends money home abroad
        self.family_abroad = f"c{cid}-k{pool}"
        if self.remitter:
            self.known.append(self.family_abroad)

    def new_cp(self) -> str:
        self.n_new += 1
        return f"c{self.cid}-n{self.n_new}"

    def known_cp(self, rng: np.random.Generator) -> str:
        # Zipf-like preference for the first counterparties of the pool.
        w = 1.0 / np.arange(1, len(self.known) + 1)
        return self.known[int(rng.choice(len(self.known), p=w / w.sum()))]


def _normal_txs(c: _Customer, rng: np.random.Generator) -> list[Tx]:
    out: list[Tx] = []
    horizon = SIM_DAYS * MIN_PER_DAY
    t = 0.0
    cb_p = 0.06 if c.business else 0.02
    while True:
        t += rng.exponential(MIN_PER_DAY / c.rate)
        if t >= horizon:
            break
        # daytime bias: shift into 07:00-22:00
        day = int(t // MIN_PER_DAY)
        ts = day * MIN_PER_DAY + rng.uniform(7 * 60, 22 * 60)
        new = rng.random() < 0.08
        cp = c.new_cp() if new else c.known_cp(rng)
        cross = rng.random() < cb_p
        if c.business:
            incoming = rng.random() < 0.55
            cash = incoming and rng.random() < 0.25
            amt = rng.lognormal(math.log(c.median), 0.9)
            if cash and rng.random() < 0.08:
                amt = rng.uniform(8000, 9990)  # legitimate big takings
            elif not incoming and rng.random() < 0.10:
                amt = 1000.0 * int(rng.integers(1, 16))  # round supplier payment
            if cash:
                cp, cross = f"branch-{int(rng.integers(0, 3))}", False
        else:
            r = rng.random()
            if r < 0.15:  # ATM withdrawal
                incoming, cash = False, True
                amt = 20.0 * int(rng.integers(1, 51))
                cp, cross = f"branch-{int(rng.integers(0, 3))}", False
            elif r < 0.20:  # large transfer: savings, tax, loan, family, deposit
                incoming = rng.random() < 0.5
                cash = False
                amt = float(np.clip(rng.lognormal(math.log(4000), 0.9), 1000, 40000))
                if rng.random() < 0.4:
                    amt = 1000.0 * max(1, round(amt / 1000))
            else:
                incoming = rng.random() < 0.12
                cash = False
                amt = rng.lognormal(math.log(c.median), 1.0)
        out.append(Tx(c.cid, ts, round(float(amt), 2), incoming, cash, cross, cp, 0, ""))
    if c.seller:
        # many small payments in from new buyers; the takings go to savings every few days
        t = rng.uniform(0, 2) * MIN_PER_DAY
        acc = 0.0
        while t < horizon:
            a = round(float(rng.uniform(20, 400)), 2)
            acc += a
            out.append(Tx(c.cid, t, a, True, False, rng.random() < 0.1, c.new_cp(), 0, ""))
            if rng.random() < 0.12:
                out.append(Tx(c.cid, t + rng.uniform(30, 600), round(acc * rng.uniform(0.8, 1.0), 2),
                              False, False, False, c.known[2 % len(c.known)], 0, ""))
                acc = 0.0
            t += rng.exponential(MIN_PER_DAY / 3.0)
    if c.remitter:
        for month in range(SIM_DAYS // 30 + 1):
            ts = (month * 30 + c.pay_day + rng.uniform(0, 3)) * MIN_PER_DAY + 600
            if ts < horizon:
                a = 100.0 * int(rng.integers(2, 16)) if rng.random() < 0.6 else rng.uniform(150, 1500)
                out.append(Tx(c.cid, ts, round(float(a), 2), False, rng.random() < 0.3, True,
                              c.family_abroad, 0, ""))
    if not c.business:
        for month in range(SIM_DAYS // 30 + 1):
            ts = (month * 30 + c.pay_day) * MIN_PER_DAY + rng.uniform(6 * 60, 9 * 60)
            if ts >= horizon:
                continue
            out.append(Tx(c.cid, ts, c.salary, True, False, False, c.known[0], 0, ""))
            # rent often leaves a few hours after the salary arrives (benign in-out)
            lag = rng.uniform(60, 8 * 60) if rng.random() < 0.5 else rng.uniform(1, 5) * MIN_PER_DAY
            if ts + lag < horizon:
                out.append(Tx(c.cid, ts + lag, c.rent, False, False, False, c.known[1], 0, ""))
    return out


def _benign_big_purchase(c: _Customer, rng: np.random.Generator) -> list[Tx]:
    ts = rng.uniform(WARMUP_DAYS, SIM_DAYS - 1) * MIN_PER_DAY
    amt = 1000.0 * int(rng.integers(3, 26))
    return [Tx(c.cid, ts, amt, False, False, rng.random() < 0.1, c.new_cp(), 0, "")]


def _episode(c: _Customer, typ: str, rng: np.random.Generator) -> list[Tx]:
    t0 = rng.uniform(WARMUP_DAYS + 0.5, SIM_DAYS - 6) * MIN_PER_DAY
    H = 60.0
    txs: list[Tx] = []

    def add(dt, amt, incoming, cash, cross, cp):
        txs.append(Tx(c.cid, t0 + dt, round(float(amt), 2), incoming, cash, cross, cp, 1, typ))

    if typ == "structuring":
        k = int(rng.integers(3, 7))
        span = rng.uniform(6, 48) * H
        total = 0.0
        for dt in np.sort(rng.uniform(0, span, k)):
            amt = 10.0 * int(rng.integers(600, 1000))
            total += amt
            add(dt, amt, True, True, False, f"branch-{int(rng.integers(0, 6))}")
        if rng.random() < 0.5:
            add(span + rng.uniform(1, 3) * MIN_PER_DAY, total, False, False,
                rng.random() < 0.5, c.new_cp())
    elif typ == "rapid_in_out":
        a = float(np.clip(rng.lognormal(math.log(8000), 0.9), 1000, 60000))
        add(0.0, a, True, False, rng.random() < 0.4,
            c.new_cp() if rng.random() < 0.7 else c.known_cp(rng))
        k = int(rng.integers(1, 4))
        share = rng.uniform(0.90, 0.99)
        parts = rng.dirichlet(np.ones(k)) * a * share
        for dt, p in zip(np.sort(rng.uniform(10, 6 * H, k)), parts):
            add(dt, p, False, False, rng.random() < 0.6, c.new_cp())
    elif typ == "round_amounts":
        k = int(rng.integers(3, 9))
        for dt in np.sort(rng.uniform(0, rng.uniform(1, 5) * MIN_PER_DAY, k)):
            amt = 1000.0 * int(rng.integers(2, 21))
            cp = c.new_cp() if rng.random() < 0.6 else c.known_cp(rng)
            add(dt, amt, rng.random() < 0.5, False, rng.random() < 0.3, cp)
    elif typ == "fan_in":
        k = int(rng.integers(6, 21))
        span = rng.uniform(1, 5) * MIN_PER_DAY
        total = 0.0
        for dt in np.sort(rng.uniform(0, span, k)):
            amt = rng.uniform(100, 3000)
            total += round(amt, 2)
            add(dt, amt, True, False, rng.random() < 0.2, c.new_cp())
        k_out = int(rng.integers(1, 3))
        parts = rng.dirichlet(np.ones(k_out)) * total * rng.uniform(0.85, 1.0)
        for dt, p in zip(np.sort(rng.uniform(span, span + MIN_PER_DAY, k_out)), parts):
            if rng.random() < 0.3:
                add(dt, p, False, True, False, f"branch-{int(rng.integers(0, 6))}")
            else:
                add(dt, p, False, False, rng.random() < 0.5, c.new_cp())
    elif typ == "cash_to_wire":
        k = int(rng.integers(2, 5))
        span = rng.uniform(1, 3) * MIN_PER_DAY
        total = 0.0
        for dt in np.sort(rng.uniform(0, span, k)):
            amt = rng.uniform(1000, 8000)
            total += round(amt, 2)
            add(dt, amt, True, True, False, f"branch-{int(rng.integers(0, 6))}")
        add(span + rng.uniform(60, 12 * H), total * rng.uniform(0.9, 1.0), False, False, True,
            c.new_cp())
    else:
        raise ValueError(typ)
    return txs


def generate(seed: int) -> tuple[list[Tx], np.ndarray]:
    """All transactions of the simulation (time-ordered per customer, warm-up included) and a
    per-customer flag (1 = carries at least one typology episode)."""
    rng = np.random.default_rng(seed)
    txs: list[Tx] = []
    suspicious = np.zeros(N_CUSTOMERS, dtype=np.int64)
    for cid in range(N_CUSTOMERS):
        c = _Customer(cid, rng)
        txs.extend(_normal_txs(c, rng))
        if rng.random() < 0.08:
            txs.extend(_benign_big_purchase(c, rng))
        if rng.random() < SUSPICIOUS_SHARE:
            suspicious[cid] = 1
            for _ in range(int(rng.integers(1, 4))):
                txs.extend(_episode(c, TYPOLOGIES[int(rng.integers(0, len(TYPOLOGIES)))], rng))
    txs.sort(key=lambda x: (x.customer, x.t))
    return txs, suspicious


def _is_known(cp: str) -> bool:
    return "-k" in cp


def features(txs: list[Tx]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Engineered features (float64, columns as FEATURES), labels, customer ids and a mask of
    the transactions outside the warm-up period. `txs` must be sorted by (customer, t)."""
    n = len(txs)
    X = np.zeros((n, len(FEATURES)), dtype=np.float64)
    y = np.array([tx.label for tx in txs], dtype=np.int64)
    cust = np.array([tx.customer for tx in txs], dtype=np.int64)
    keep = np.array([tx.t >= WARMUP_DAYS * MIN_PER_DAY for tx in txs])
    start = 0
    while start < n:
        end = start
        while end < n and txs[end].customer == txs[start].customer:
            end += 1
        seen: set[str] = set()
        times = [txs[i].t for i in range(start, end)]
        new_times: list[float] = []  # times of first contact with a new counterparty
        for j, i in enumerate(range(start, end)):
            tx = txs[i]
            t = tx.t
            cp_new = not (_is_known(tx.counterparty) or tx.counterparty.startswith("branch-0")
                          or tx.counterparty in seen)
            seen.add(tx.counterparty)
            if cp_new:
                new_times.append(t)
            lo24 = bisect_left(times, t - MIN_PER_DAY, 0, j + 1)
            lo48 = bisect_left(times, t - 2 * MIN_PER_DAY, 0, j + 1)
            win24 = txs[start + lo24: i + 1]
            win48 = txs[start + lo48: i + 1]
            s_in = sum(w.amount for w in win48 if w.incoming)
            s_out = sum(w.amount for w in win48 if not w.incoming)
            flow = min(s_in, s_out) / max(s_in, s_out) if s_in > 0 and s_out > 0 else 0.0
            prev = (t - times[j - 1]) if j > 0 else 30 * MIN_PER_DAY
            n7 = len(new_times) - bisect_left(new_times, t - 7 * MIN_PER_DAY)
            a = tx.amount
            X[i] = [
                math.log1p(a),
                1.0 if a >= 1000 and a % 1000 == 0 else 0.0,
                1.0 if 0.8 * THRESHOLD <= a < THRESHOLD else 0.0,
                1.0 if tx.cash else 0.0,
                1.0 if tx.cross_border else 0.0,
                1.0 if tx.incoming else 0.0,
                1.0 if cp_new else 0.0,
                math.log1p(len(win24)),
                math.log1p(sum(w.amount for w in win24)),
                math.log1p(max(prev, 0.0)),
                flow,
                math.log1p(n7),
            ]
        start = end
    return X, y, cust, keep
