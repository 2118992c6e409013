"""What the wiring derives from a spec (``core.spec_file.SpecFile``, the one spec type): its asset keys,
its partitions definition and the ``partition_date`` value of a partition key."""

from __future__ import annotations

import datetime as dt
from functools import cache

import dagster as dg

from batch_assets.core.names import InvalidName, parse_partition_date
from batch_assets.core.spec_file import SpecFile
from partitions import DAILY_START_DATE, daily_partitions


def scores_key(spec: SpecFile) -> dg.AssetKey:
    """The predictions asset: ``<group>/<name>``."""
    return dg.AssetKey([spec.group, spec.name])


def summary_key(spec: SpecFile) -> dg.AssetKey:
    return dg.AssetKey([spec.group, spec.name.removesuffix("_scores") + "_summary"])


def model_key(spec: SpecFile) -> dg.AssetKey:
    return dg.AssetKey(["models", spec.model.name])


def features_key(spec: SpecFile) -> dg.AssetKey:
    return dg.AssetKey(spec.features.asset.split("/"))


def partitions_of(spec: SpecFile) -> dg.TimeWindowPartitionsDefinition:
    """The partitions of a spec; a daily spec without its own start shares ``daily_partitions``."""
    p = spec.partitioning
    return _partitions(p.type, p.start, p.timezone)


@cache
def _partitions(kind: str, start: str | None, timezone: str) -> dg.TimeWindowPartitionsDefinition:
    if kind == "daily":
        if start is None and timezone == "UTC":
            return daily_partitions
        return dg.DailyPartitionsDefinition(start_date=start or DAILY_START_DATE, timezone=timezone)
    return dg.HourlyPartitionsDefinition(start_date=start, timezone=timezone)


def partition_value(spec: SpecFile, key: str) -> dt.date:
    """The ``partition_date`` value of partition ``key``: its day, or its window's start (naive UTC)."""
    if spec.partition_type == "DATE":
        return parse_partition_date(key)
    try:
        start = partitions_of(spec).time_window_for_partition_key(key).start
    except ValueError as exc:
        raise InvalidName(f"invalid partition key {key!r} of {spec.name}: {exc}") from exc
    return start.astimezone(dt.UTC).replace(tzinfo=None)


def pipeline_job_name(spec: SpecFile) -> str:
    return f"{spec.name}_pipeline"


def score_job_name(spec: SpecFile) -> str:
    return f"score_{spec.name}"
