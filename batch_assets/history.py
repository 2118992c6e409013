"""What the Dagster instance remembers about scored partitions: their latest materializations.

Both lookups cost one indexed query for the latest event id of each partition and then one read of
those records, so they grow with the number of partitions, not with how often each was re-scored."""

import dagster as dg

_PAGE = 500  # records read per query by storage id


def latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: list[str] | None = None
) -> dict[str, dg.EventLogRecord]:
    """The latest materialization record of each of ``partitions`` (all partitions when None) that has one."""
    if partitions is not None and not partitions:
        return {}
    latest_ids = instance.get_latest_storage_id_by_partition(
        key, dg.DagsterEventType.ASSET_MATERIALIZATION, set(partitions) if partitions else None
    )
    ids = sorted(latest_ids.values())
    out: dict[str, dg.EventLogRecord] = {}
    for start in range(0, len(ids), _PAGE):
        page = ids[start : start + _PAGE]
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=page), limit=len(page)
        )
        for record in result.records:
            partition = record.asset_materialization.partition if record.asset_materialization else None
            if partition is not None:
                out[partition] = record
    return out


def scored_versions(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    """The model version of each partition's latest materialization ("?" where it names none)."""
    out: dict[str, str] = {}
    for partition, record in latest_materializations(instance, key).items():
        version = record.asset_materialization.metadata.get("model_version")
        out[partition] = str(version.value) if version is not None else "?"
    return out


def partitions_by_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, list[str]]:
    """Scored partitions grouped by the model version of their latest materialization, each list sorted."""
    by_version: dict[str, list[str]] = {}
    for partition, version in sorted(scored_versions(instance, key).items()):
        by_version.setdefault(version, []).append(partition)
    return by_version
