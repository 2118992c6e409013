"""Deterministic demo data: card transactions, one Parquet folder per day, and fraud labels.

Each day is generated from ``(seed, day)`` alone, so any day's file is the same whenever and in whatever
order it is generated. Customers have stable habits (home country, spend level, channel mix); a small share
of customer-days carry fraud (bursts of large, foreign, online, night-time transactions), and the label
files record those customer-days like chargebacks arriving later. ``shift_days`` get a deliberate
distribution shift (higher amounts, more foreign and online activity) for the drift checks to flag.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from batch_assets.storage.warehouse import landing_dir

COUNTRIES = np.array(["US", "GB", "DE", "FR", "ES", "IT", "NL", "BR", "IN", "NG", "RU", "CN"])
HOME_COUNTRIES = 6  # customers live in the first six
MERCHANT_CATEGORIES = np.array(
    [
        "grocery",
        "fuel",
        "restaurant",
        "travel",
        "electronics",
        "fashion",
        "pharmacy",
        "gaming",
        "jewelry",
        "utilities",
    ]
)
CHANNELS = np.array(["pos", "online", "atm"])


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    customers: int = 10_000
    start: dt.date = dt.date(2026, 9, 1)
    days: int = 60
    fraud_rate: float = 0.01
    shift_days: tuple[dt.date, ...] = field(default=(dt.date(2026, 10, 25),))

    @property
    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]


def _customers(cfg: DemoConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.customers
    return {
        "id": np.arange(100_001, 100_001 + n, dtype=np.int64),
        "home": rng.integers(0, HOME_COUNTRIES, n),
        "rate": rng.gamma(2.0, 0.35, n),  # mean 0.7 transactions per day
        "spend": rng.lognormal(3.3, 0.6, n),  # typical amount
        "online": rng.beta(2, 5, n),
        "risk": rng.beta(1.0, 40.0, n),  # fraud propensity, mean ~0.024 relative
    }


def generate_day(cfg: DemoConfig, day: dt.date) -> tuple[pa.Table, pa.Table]:
    """Transactions and fraud labels of ``day`` (deterministic in ``cfg.seed`` and ``day``)."""
    cust = _customers(cfg)
    rng = np.random.default_rng([cfg.seed, day.toordinal()])
    shifted = day in cfg.shift_days
    n_cust = cfg.customers
    # fraud hits a customer-day with probability proportional to the customer's risk
    fraud_day = rng.random(n_cust) < np.clip(cust["risk"] * cfg.fraud_rate / cust["risk"].mean(), 0, 1)
    counts = rng.poisson(cust["rate"] * (1.6 if shifted else 1.0))
    fraud_counts = np.where(fraud_day, rng.integers(1, 4, n_cust), 0)
    total = counts + fraud_counts
    idx = np.repeat(np.arange(n_cust), total)
    m = idx.size
    starts = np.cumsum(total) - total
    is_fraud = (np.arange(m) - starts[idx]) >= counts[idx]  # each customer's fraud rows come after the rest

    night = is_fraud & (rng.random(m) < 0.2)
    hours = np.where(night, rng.integers(0, 6, m), np.clip(rng.normal(14, 4.5, m), 0, 23.99))
    seconds = (hours * 3600 + rng.integers(0, 3600, m) * (hours < 23)).astype(np.int64)
    midnight = np.datetime64(day.isoformat(), "s")
    ts = (midnight + seconds.astype("timedelta64[s]")).astype("datetime64[us]")

    spend = cust["spend"][idx] * (1.8 if shifted else 1.0)
    amount = np.round(
        rng.lognormal(np.log(spend), 0.6) * np.where(is_fraud, rng.uniform(0.8, 2.5, m), 1.0), 2
    )

    foreign_p = np.where(is_fraud, 0.2, 0.25 if shifted else 0.05)
    foreign = rng.random(m) < foreign_p
    country_idx = np.where(foreign, rng.integers(0, len(COUNTRIES), m), cust["home"][idx])
    online_p = np.where(is_fraud, 0.5, np.minimum(cust["online"][idx] * (1.8 if shifted else 1.0), 0.95))
    channel_idx = np.where(rng.random(m) < online_p, 1, np.where(rng.random(m) < 0.85, 0, 2))
    mcc_p = np.where(
        is_fraud[:, None],
        [0.15, 0.08, 0.12, 0.08, 0.15, 0.1, 0.05, 0.12, 0.1, 0.05],
        [0.3, 0.12, 0.18, 0.04, 0.05, 0.1, 0.08, 0.04, 0.01, 0.08],
    )
    mcc_idx = (rng.random(m)[:, None] > np.cumsum(mcc_p, axis=1)).sum(axis=1).clip(0, 9)

    order = np.argsort(ts, kind="stable")
    txn = pa.table(
        {
            "transaction_id": pa.array([f"{day:%Y%m%d}-{i:07d}" for i in range(m)], pa.string()),
            "customer_id": pa.array(cust["id"][idx][order], pa.int64()),
            "event_ts": pa.array(ts[order], pa.timestamp("us")),
            "amount": pa.array(amount[order], pa.float64()),
            "merchant_category": pa.array(MERCHANT_CATEGORIES[mcc_idx[order]]),
            "country": pa.array(COUNTRIES[country_idx[order]]),
            "channel": pa.array(CHANNELS[channel_idx[order]]),
        }
    )
    labels = pa.table(
        {
            "customer_id": pa.array(cust["id"], pa.int64()),
            "event_date": pa.array([day] * n_cust, pa.date32()),
            "is_fraud": pa.array(fraud_day),
        }
    ).filter(pa.array(total > 0))
    return txn, labels


LANDING_FILE = "part-0.parquet"


def labels_dir(landing_root: Path, day: dt.date) -> Path:
    return landing_root / "labels" / f"event_date={day.isoformat()}"


def day_is_written(landing_root: Path, day: dt.date) -> bool:
    return (landing_dir(landing_root, day) / LANDING_FILE).is_file()


def write_landing(cfg: DemoConfig, landing_root: Path, days: list[dt.date] | None = None) -> list[dt.date]:
    """Write ``days`` (default: all of ``cfg``) under ``landing_root``; files are replaced atomically.

    Labels are written first, so a day whose transactions folder exists is complete.
    """
    days = cfg.dates if days is None else days
    for day in days:
        txn, labels = generate_day(cfg, day)
        _write_atomic(labels, labels_dir(landing_root, day) / LANDING_FILE)
        _write_atomic(txn, landing_dir(landing_root, day) / LANDING_FILE)
    return days


def _write_atomic(table: pa.Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
