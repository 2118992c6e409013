"""The demo: generate landing data, run raw -> features, train and register a model, score every day.

Every step is idempotent: re-running skips landing days that exist, keeps a registered champion and
re-materializes partitions in place (replacing, never duplicating, their rows).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from batch_assets.core.registry import ModelNotFound
from batch_assets.demo import data as demo_data
from batch_assets.demo import training
from batch_assets.local_runs import QUIET, RunFailed, open_instance, run_partitions
from batch_assets.settings import Settings
from batch_assets.storage.warehouse import FEATURE_COLUMNS
from partitions import FEATURE_WINDOW_DAYS
from resources import shell_resources

MODEL_NAME = "risk_model"
TRAIN_DAYS = 21


@dataclass
class DemoResult:
    days: list[dt.date]
    model_version: str
    predictions: int
    dead_letters: int


def training_days(cfg: demo_data.DemoConfig) -> list[dt.date]:
    """The first ``TRAIN_DAYS`` days whose features have a full 30-day window (and no injected shift).

    Training on full-window days makes the model's reference statistics comparable with the days the drift
    checks judge; with too few days of data it falls back to the first days.
    """
    complete = [d for d in cfg.dates[FEATURE_WINDOW_DAYS - 1 :] if d not in cfg.shift_days]
    return (complete or cfg.dates)[:TRAIN_DAYS]


def train_and_register(settings: Settings, train_days: list[dt.date], say: Callable[[str], None]) -> str:
    """Train the demo model on ``train_days`` of features and labels, register it, promote it to champion."""
    resources = shell_resources(settings)
    registry = resources["model_registry"].get_registry()
    try:
        champion = registry.resolve(MODEL_NAME, "champion")
        say(f"model {MODEL_NAME} already has champion version {champion.version}; not retraining")
        return champion.version
    except ModelNotFound:
        pass
    labels = pads.dataset(
        [str(demo_data.labels_dir(settings.landing, d) / demo_data.LANDING_FILE) for d in train_days],
        format="parquet",
    ).to_table()
    cols = ", ".join(f"f.{c}" for c in FEATURE_COLUMNS)
    with resources["warehouse"].connect() as con:
        con.register("labels", labels)
        rows = con.execute(
            f"""SELECT {cols}, coalesce(l.is_fraud, false) AS y
            FROM features.customer_daily f
            LEFT JOIN labels l ON l.customer_id = f.entity_id AND l.event_date = f.partition_date
            WHERE f.partition_date BETWEEN $start AND $end
            ORDER BY f.partition_date, f.entity_id""",
            {"start": train_days[0], "end": train_days[-1]},
        ).fetchnumpy()
    x = np.column_stack([rows[c] for c in FEATURE_COLUMNS]).astype(np.float32)
    y = rows["y"].astype(np.float32)
    model, metrics = training.train_risk_model(x, y)
    say(
        f"trained {MODEL_NAME} on {len(x):,} customer-days ({train_days[0]}..{train_days[-1]}): "
        f"validation AUC {metrics['valid_auc']:.3f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        artifact = training.export_model(
            model,
            Path(tmp) / "model.safetensors",
            feature_columns=FEATURE_COLUMNS,
            x_reference=x,
            training={"window": [train_days[0].isoformat(), train_days[-1].isoformat()], "metrics": metrics},
            description="Demo card-transaction risk model (customer-day fraud probability).",
        )
        info = registry.register(MODEL_NAME, artifact, actor="demo")
    registry.promote(MODEL_NAME, info.version, "champion", actor="demo")
    say(
        f"registered {MODEL_NAME} version {info.version} (sha256 {info.sha256[:12]}…) and promoted it to champion"
    )
    return info.version


def run_demo(settings: Settings, cfg: demo_data.DemoConfig, say: Callable[[str], None] = print) -> DemoResult:
    from batch_assets.definitions import build_definitions

    missing = [d for d in cfg.dates if not demo_data.day_is_written(settings.landing, d)]
    if missing:
        say(
            f"generating {len(missing)} days of landing data for {cfg.customers:,} customers (seed {cfg.seed})"
        )
        demo_data.write_landing(cfg, settings.landing, days=missing)
    defs = build_definitions(settings)
    keys = [d.isoformat() for d in cfg.dates]
    with open_instance(settings) as instance:
        say(f"materializing raw/transactions and features/customer_daily for {keys[0]}..{keys[-1]}")
        run_partitions(defs, instance, "ingest_daily", keys)
        version = train_and_register(settings, training_days(cfg), say)
        observed = defs.resolve_job_def("observe_models").execute_in_process(
            instance=instance, run_config=QUIET
        )
        if not observed.success:
            raise RunFailed("observing models/risk_model failed")
        say(f"materializing predictions/risk_scores and predictions/risk_summary for {len(keys)} days")
        run_partitions(defs, instance, "score_daily", keys)
    with shell_resources(settings)["warehouse"].connect() as con:
        preds = con.execute(
            "SELECT count(*) FROM predictions.risk_scores WHERE partition_date BETWEEN $a AND $b",
            {"a": cfg.dates[0], "b": cfg.dates[-1]},
        ).fetchall()[0][0]
        dead = con.execute(
            "SELECT count(*) FROM predictions.dead_letters WHERE partition_date BETWEEN $a AND $b",
            {"a": cfg.dates[0], "b": cfg.dates[-1]},
        ).fetchall()[0][0]
    return DemoResult(days=cfg.dates, model_version=version, predictions=preds, dead_letters=dead)
