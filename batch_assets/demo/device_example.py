"""The second example: hourly device telemetry scored for failure probability, built only from a spec.

Unlike the demo (daily, customer key, features computed in SQL from raw transactions), this dataset is
partitioned by hour, keyed by ``device_id``, and its features arrive ready-made as Parquet files, one
folder per hour: ``device_telemetry/date=YYYY-MM-DD/hour=HH/part-0.parquet``. Its model is a user-style
``nn.Module`` (:class:`FailureNet`) registered from a ``weights_only`` state dict plus this architecture
reference, not one of the platform's declared architectures. Deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

FEATURES = ("temperature_c", "vibration_rms", "pressure_kpa", "rpm", "hours_since_service")
START = dt.datetime(2026, 11, 1, 0, 0)
DATASET = "device_telemetry"


class FailureNet(nn.Module):
    """Standardise, one hidden layer, sigmoid: the probability that a device fails within the hour."""

    def __init__(self, n_features: int = len(FEATURES), hidden: int = 16) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))
        self.body = nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body((x - self.mean) / self.scale))  # shape [n, 1]


def hour_folder(root: Path, hour: dt.datetime) -> Path:
    return root / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def telemetry(
    hour: dt.datetime, devices: int, seed: int = 11, hot: bool = False
) -> tuple[pa.Table, np.ndarray]:
    """One hour of readings (one row per device) and whether each device failed; ``hot`` shifts temperatures."""
    rng = np.random.default_rng([seed, int(hour.timestamp())])
    n = devices
    temperature = rng.normal(70 + (25 if hot else 0), 8, n)
    vibration = rng.gamma(2.0, 0.6, n)
    pressure = rng.normal(300, 20, n)
    rpm = rng.normal(1500, 120, n)
    since_service = rng.uniform(0, 2000, n)
    z = -6 + 0.08 * (temperature - 70) + 1.1 * vibration + 0.0012 * since_service
    failed = rng.random(n) < 1 / (1 + np.exp(-z))
    table = pa.table(
        {
            "device_id": pa.array(np.arange(1, n + 1), pa.int64()),
            "temperature_c": temperature,
            "vibration_rms": vibration,
            "pressure_kpa": pressure,
            "rpm": rpm,
            "hours_since_service": since_service,
            "site": pa.array([f"site-{i % 4}" for i in range(n)]),  # not a feature: ignored by the spec
            "failed_next_hour": pa.array(failed),  # the label, for training
        }
    )
    return table, failed


def write_telemetry(
    root: Path, hours: int, devices: int = 300, seed: int = 11, start: dt.datetime = START
) -> list[dt.datetime]:
    """Write ``hours`` hourly folders of telemetry under ``root`` (see :func:`hour_folder`); returns the hours."""
    written = []
    for i in range(hours):
        hour = start + dt.timedelta(hours=i)
        table, _ = telemetry(hour, devices, seed)
        folder = hour_folder(root, hour)
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, folder / "part-0.parquet")
        written.append(hour)
    return written


def train_failure_model(
    hours: list[dt.datetime], devices: int = 300, seed: int = 11, epochs: int = 60
) -> FailureNet:
    """Fit :class:`FailureNet` on the telemetry and failures of ``hours`` (full-batch Adam; deterministic)."""
    torch.manual_seed(seed)
    tables = [telemetry(h, devices, seed) for h in hours]
    x = np.concatenate([np.column_stack([t.column(c).to_numpy() for c in FEATURES]) for t, _ in tables])
    y = np.concatenate([f for _, f in tables]).astype(np.float32)
    xt, yt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y)
    model = FailureNet(len(FEATURES))
    with torch.no_grad():
        model.mean.copy_(xt.mean(dim=0))
        model.scale.copy_(xt.std(dim=0).clamp_min(1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss = nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        opt.zero_grad()
        loss(model.body((xt - model.mean) / model.scale).squeeze(-1), yt).backward()
        opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Write sample hourly device telemetry as Parquet folders.")
    parser.add_argument(
        "root", type=Path, help="folder to write date=YYYY-MM-DD/hour=HH/part-0.parquet under"
    )
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    hours = write_telemetry(args.root, args.hours, args.devices, args.seed)
    print(
        f"wrote {len(hours)} hours x {args.devices} devices under {args.root} ({hours[0]:%Y-%m-%d %H:00}..)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
