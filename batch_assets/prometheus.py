"""Prometheus metrics of scoring runs and checks, built in a fresh registry per push (no dagster here).

Each push carries the figures of one partition: what was scored, how fast, with which model, and how its
checks came out. Labels are few and bounded: job, asset, partition and model_version (plus check and
severity on check metrics); never entity ids. The Pushgateway groups them by (job, asset, partition), and
by check for check metrics, so a re-run replaces the partition's figures instead of adding new series.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import pushadd_to_gateway

PREFIX = "batch_assets_"
RUN_LABELS = ("asset", "partition", "model_version")
CHECK_LABELS = ("asset", "partition", "check", "severity")

# name -> help; every metric the exporter can produce (the dashboard and alert rules may use only these)
RUN_METRICS = {
    "rows_read": "Feature rows read for the partition.",
    "rows_scored": "Rows scored and written for the partition.",
    "dead_letters": "Rows of the partition sent to the dead-letter table.",
    "completeness_ratio": "(rows scored + dead letters) / rows read: 1 when every input row is accounted for.",
    "duration_seconds": "Wall time of the step that scored the partition (the whole chunk for a backfill).",
    "rows_per_second": "Rows read per second of scoring, model load excluded.",
    "peak_memory_bytes": "Peak resident memory of the scoring process.",
    "partition_end_timestamp_seconds": "End of the scored partition's time window (Unix time).",
    "last_success_timestamp_seconds": "When the partition was last scored successfully (Unix time).",
    "run_success": "1 when the run scored the partition, 0 when it failed.",
}
CHECK_METRICS = {
    "check_passed": "1 when the partition's check passed, 0 when it failed.",
    "check_timestamp_seconds": "When the check last judged the partition (Unix time).",
}
METRIC_NAMES = frozenset(PREFIX + n for n in (*RUN_METRICS, *CHECK_METRICS))


@dataclass(frozen=True)
class PartitionFigures:
    """What one run recorded for one partition of a scored asset."""

    asset: str
    partition: str
    model_version: str
    rows_read: int
    rows_scored: int
    dead_letters: int
    duration_s: float
    rows_per_s: float
    peak_rss_mb: float
    partition_end: dt.datetime | None = None


def _gauge(registry: CollectorRegistry, name: str, help_text: str, labels: tuple[str, ...]) -> Gauge:
    return Gauge(PREFIX + name, help_text, labels, registry=registry)


def run_registry(figures: PartitionFigures, *, now: float | None = None) -> CollectorRegistry:
    """The run metrics of one scored partition in a registry of their own."""
    registry = CollectorRegistry()
    labels = {"asset": figures.asset, "partition": figures.partition, "model_version": figures.model_version}
    values = {
        "rows_read": figures.rows_read,
        "rows_scored": figures.rows_scored,
        "dead_letters": figures.dead_letters,
        "completeness_ratio": (figures.rows_scored + figures.dead_letters) / figures.rows_read
        if figures.rows_read
        else 1.0,
        "duration_seconds": figures.duration_s,
        "rows_per_second": figures.rows_per_s,
        "peak_memory_bytes": figures.peak_rss_mb * 1024 * 1024,
        "last_success_timestamp_seconds": time.time() if now is None else now,
        "run_success": 1,
    }
    if figures.partition_end is not None:
        end = figures.partition_end
        values["partition_end_timestamp_seconds"] = (
            end if end.tzinfo else end.replace(tzinfo=dt.UTC)
        ).timestamp()
    for name, value in values.items():
        _gauge(registry, name, RUN_METRICS[name], RUN_LABELS).labels(**labels).set(value)
    return registry


def failure_registry(asset: str, partition: str, model_version: str) -> CollectorRegistry:
    """``run_success`` 0 for a partition whose run failed (its other figures are left as they were)."""
    registry = CollectorRegistry()
    _gauge(registry, "run_success", RUN_METRICS["run_success"], RUN_LABELS).labels(
        asset=asset, partition=partition, model_version=model_version
    ).set(0)
    return registry


def check_registry(
    asset: str, partition: str, check: str, *, passed: bool, severity: str, now: float | None = None
) -> CollectorRegistry:
    """The outcome of one check on one partition in a registry of its own."""
    registry = CollectorRegistry()
    labels = {"asset": asset, "partition": partition, "check": check, "severity": severity}
    _gauge(registry, "check_passed", CHECK_METRICS["check_passed"], CHECK_LABELS).labels(**labels).set(
        1 if passed else 0
    )
    _gauge(
        registry, "check_timestamp_seconds", CHECK_METRICS["check_timestamp_seconds"], CHECK_LABELS
    ).labels(**labels).set(time.time() if now is None else now)
    return registry


def push(
    gateway: str,
    registry: CollectorRegistry,
    *,
    job: str,
    grouping_key: Mapping[str, str],
    timeout: float = 5.0,
) -> None:
    """Push ``registry`` to the group ``job`` + ``grouping_key``, replacing only the metrics it holds."""
    pushadd_to_gateway(gateway, job=job, registry=registry, grouping_key=dict(grouping_key), timeout=timeout)
