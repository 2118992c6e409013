"""What the rollout sensor and the model asset pay to learn each partition's model version, as history grows.

    python benchmarks/bench_history.py [--partitions 365] [--rescores 1,4,8] [--rounds 5]

A SQLite Dagster instance (as `make dev` uses) gets ``--partitions`` materializations of one asset per
re-score, each with the metadata a scored partition carries (model version and sha256, rows, checksum, a
drift table). After each step of ``--rescores`` (the number of times every partition has been scored), it
times two lookups of every partition's latest model version, interleaved over ``--rounds``:

- ``scan``: the earlier lookup, every materialization record newest first, in pages of 1,000;
- ``indexed``: ``batch_assets.history.scored_versions``, the latest event id per partition (one grouped,
  indexed query), then only those records.

Both must agree. Reported: the median seconds of each and its spread ((max - min) / median), and the ratio
scan / indexed. Writes benchmarks/results/history.jsonl.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_assets.history import scored_versions  # noqa: E402

KEY = dg.AssetKey(["predictions", "risk_scores"])


def scan(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, str]:
    out: dict[str, str] = {}
    cursor = None
    while True:
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key), limit=1000, cursor=cursor
        )
        for record in result.records:
            mat = record.asset_materialization
            if mat and mat.partition and mat.partition not in out:
                out[mat.partition] = str(mat.metadata["model_version"].value)
        if not result.has_more:
            return out
        cursor = result.cursor


def materialize(instance: dg.DagsterInstance, partitions: list[str], version: int) -> None:
    drift = "| feature | psi |\n|---|---|\n" + "\n".join(f"| f{i} | 0.01 |" for i in range(15))
    for partition in partitions:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                KEY,
                partition=partition,
                metadata={
                    "model_version": str(version),
                    "model_sha256": "0" * 64,
                    "rows": 10_000,
                    "input_checksum": "1" * 64,
                    "drift": dg.MetadataValue.md(drift),
                },
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partitions", type=int, default=365)
    parser.add_argument("--rescores", default="1,4,8", help="comma-separated, increasing")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    partitions = [f"p{i:04d}" for i in range(args.partitions)]
    results = []
    with dg.instance_for_test() as instance:
        done = 0
        for target in sorted(int(r) for r in args.rescores.split(",")):
            while done < target:
                done += 1
                materialize(instance, partitions, done)
            times: dict[str, list[float]] = {"scan": [], "indexed": []}
            for _ in range(args.rounds):
                for name, lookup in (("scan", scan), ("indexed", scored_versions)):
                    start = time.perf_counter()
                    got = lookup(instance, KEY)
                    times[name].append(time.perf_counter() - start)
                    assert got == {p: str(done) for p in partitions}, name
            row = {"partitions": args.partitions, "rescores": done, "records": done * args.partitions}
            for name, ts in times.items():
                med = statistics.median(ts)
                row[f"{name}_s"] = round(med, 4)
                row[f"{name}_spread"] = round((max(ts) - min(ts)) / med, 2)
            row["scan_over_indexed"] = round(row["scan_s"] / row["indexed_s"], 2)
            results.append(row)
            print(
                f"{done} re-score(s), {row['records']} records: scan {row['scan_s']:.3f} s "
                f"({row['scan_spread']:.0%}), indexed {row['indexed_s']:.3f} s ({row['indexed_spread']:.0%}), "
                f"ratio {row['scan_over_indexed']:.2f}"
            )
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "history.jsonl").open("a") as f:
        for row in results:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
