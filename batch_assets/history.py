"""What the Dagster instance remembers about scored partitions: their latest materializations."""

import dagster as dg


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str]
) -> dict[str, dg.EventLogRecord]:
    """The latest materialization of each of ``partitions`` that has one, read newest first in pages
    (one query for a chunk whose partitions were just written, instead of one query per partition)."""
    wanted, out = set(partitions), {}
    cursor = None
    while missing := wanted - out.keys():
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=list(missing)),
            limit=max(len(wanted), 100),
            cursor=cursor,
        )
        for record in result.records:
            partition = record.asset_materialization.partition if record.asset_materialization else None
            if partition in wanted and partition not in out:
                out[partition] = record
        if not result.has_more:
            break
        cursor = result.cursor
    return out


def scored_versions(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    """The model version of each partition's latest materialization (newest events read first)."""
    out: dict[str, str] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor
        )
        for record in result.records:
            mat = record.asset_materialization
            if mat and mat.partition and mat.partition not in out:
                version = mat.metadata.get("model_version")
                out[mat.partition] = str(version.value) if version is not None else "?"
        if not result.has_more:
            return out
        cursor = result.cursor


def partitions_by_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, list[str]]:
    """Scored partitions grouped by the model version of their latest materialization, each list sorted."""
    by_version: dict[str, list[str]] = {}
    for partition, version in sorted(scored_versions(instance, key).items()):
        by_version.setdefault(version, []).append(partition)
    return by_version
