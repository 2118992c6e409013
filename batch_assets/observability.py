"""Figures every materialization records: duration, throughput and peak memory of the process.

``push_partition_metrics`` and ``push_check_metrics`` hand the same figures to the ``metrics`` resource, which
pushes them to a Pushgateway when one is configured.
"""

import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from batch_assets.core.scorer import ScoreStats
from batch_assets.prometheus import PartitionFigures, failure_registry
from resources import MetricsResource


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


@dataclass
class Stopwatch:
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


def _partition_end(partitions_def: dg.PartitionsDefinition | None, key: str) -> Any:
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        return partitions_def.time_window_for_partition_key(key).end
    return None


def push_partition_metrics(
    context: dg.AssetExecutionContext,
    metrics: MetricsResource,
    asset: dg.AssetKey,
    model_version: str,
    done: Sequence[tuple[Any, ScoreStats]],
    run_metadata: Mapping[str, Any],
) -> None:
    """Push the figures of each (partition key, stats) a scoring step wrote (no-op without a Pushgateway)."""
    if not metrics.enabled:
        return
    for key, stats in done:
        metrics.push_partition(
            PartitionFigures(
                asset=asset.to_user_string(),
                partition=key,
                model_version=model_version,
                rows_read=stats.rows_read,
                rows_scored=stats.rows_scored,
                dead_letters=stats.dead_letters,
                duration_s=run_metadata["duration_s"],
                rows_per_s=run_metadata["rows_per_s"],
                peak_rss_mb=run_metadata["peak_rss_mb"],
                partition_end=_partition_end(context.assets_def.partitions_def, key),
            ),
            job=context.job_name,
            logger=context.log,
        )


def push_check_metrics(
    context: dg.AssetCheckExecutionContext,
    metrics: MetricsResource,
    asset: dg.AssetKey,
    check: str,
    results: Mapping[str, Any],
) -> None:
    """Push each partition's outcome of ``check`` (results have ``passed`` and ``severity``; no-op without
    a Pushgateway)."""
    if not metrics.enabled:
        return
    for key, result in results.items():
        metrics.push_check(
            job=context.op_execution_context.job_name,
            asset=asset.to_user_string(),
            partition=key,
            check=check,
            passed=result.passed,
            severity=result.severity.value.lower(),
            logger=context.log,
        )


def build_failure_metrics_sensor(
    asset: dg.AssetKey, partitions_def: dg.PartitionsDefinition, version_tag: str
) -> dg.SensorDefinition:
    """Push ``run_success`` 0 for the partitions of ``asset`` that a failed run was to write.

    Successful runs push their figures from the asset itself; a failed run never gets there, so this sensor
    reports it, which makes the run success rate an SLI the Pushgateway can answer.
    """

    @dg.run_failure_sensor(
        name="push_failure_metrics",
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"When a run that targets {asset.to_user_string()} fails, push run_success 0 for its "
        "partitions to the Pushgateway (does nothing without BATCH_ASSETS_PUSHGATEWAY_URL).",
    )
    def _failure(context: dg.RunFailureSensorContext, metrics: MetricsResource) -> None:
        run = context.dagster_run
        if not metrics.enabled or (run.asset_selection is not None and asset not in run.asset_selection):
            return
        tags = run.tags
        if "dagster/partition" in tags:
            keys = [tags["dagster/partition"]]
        elif "dagster/asset_partition_range_start" in tags:
            keys = partitions_def.get_partition_keys_in_range(
                dg.PartitionKeyRange(
                    tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
                )
            )
        else:
            return
        for key in keys:
            metrics.push(
                failure_registry(asset.to_user_string(), key, tags.get(version_tag, "")),
                job=run.job_name,
                grouping_key={"asset": asset.to_user_string(), "partition": key},
                logger=context.log,
            )

    return _failure
