"""Run shapes of a backfill: one run per partition vs chunked runs (BackfillPolicy.multi_run).

    python benchmarks/bench_backfill.py [--customers 10000] [--partitions 10] [--out FILE]

Builds a temporary state folder (demo landing data; raw and features materialized into its lake, a folder
of Delta tables), registers a model, then scores the same partitions twice with the `score_daily` job
(scores, checks and summary), in process:
  per_partition  one run per partition, as the sensor and the schedule do
  chunked        one run over the whole range, as a backfill with BackfillPolicy.multi_run does
and reports wall time per partition and the model-load time each run paid. Runs launched by the daemon
also pay a process start (imports) per run, which this in-process measurement leaves out.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batch_assets.core.model_format import TabularMLP  # noqa: E402
from batch_assets.core.registry import ModelRegistry  # noqa: E402
from batch_assets.definitions import build_definitions  # noqa: E402
from batch_assets.demo.data import DemoConfig, write_landing  # noqa: E402
from batch_assets.demo.training import export_model  # noqa: E402
from batch_assets.local_runs import QUIET, run_partitions  # noqa: E402
from batch_assets.settings import Settings  # noqa: E402
from batch_assets.storage.lake import Lake  # noqa: E402
from batch_assets.storage.warehouse import FEATURE_COLUMNS, FEATURES_TABLE  # noqa: E402

PREDS = dg.AssetKey(["predictions", "risk_scores"])


def model_loads(instance: dg.DagsterInstance, run_ids: list[str]) -> list[float]:
    out = []
    for run_id in run_ids:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
            mat = entry.asset_materialization
            if mat.asset_key == PREDS:
                out.append(float(mat.metadata["model_load_s"].value))
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--partitions", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "backfill.jsonl")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home").ensure()
        cfg = DemoConfig(customers=args.customers, days=args.partitions)
        write_landing(cfg, settings.landing)
        defs = build_definitions(settings)
        keys = [d.isoformat() for d in cfg.dates]
        with dg.instance_for_test(temp_dir=tmp) as instance:
            run_partitions(defs, instance, "ingest_daily", keys)
            features = Lake(settings.lake_location).table(FEATURES_TABLE).to_pyarrow_dataset()
            ref = features.to_table(columns=list(FEATURE_COLUMNS))
            x = np.column_stack([ref.column(c).to_numpy() for c in FEATURE_COLUMNS]).astype(np.float32)
            model = TabularMLP(len(FEATURE_COLUMNS), (64, 32)).eval()
            artifact = export_model(
                model,
                Path(tmp) / "m.safetensors",
                feature_columns=FEATURE_COLUMNS,
                x_reference=x,
                training={},
            )
            registry = ModelRegistry(settings.registry)
            registry.promote("risk_model", registry.register("risk_model", artifact).version)
            job = defs.resolve_job_def("score_daily")

            results = []
            t = time.perf_counter()
            run_ids = [
                job.execute_in_process(instance=instance, partition_key=k, run_config=QUIET).run_id
                for k in keys
            ]
            per_partition_s = time.perf_counter() - t
            results.append(
                {
                    "method": "per_partition",
                    "partitions": len(keys),
                    "runs": len(run_ids),
                    "wall_s": per_partition_s,
                    "model_load_s": model_loads(instance, run_ids),
                }
            )
            t = time.perf_counter()
            chunk = job.execute_in_process(
                instance=instance,
                run_config=QUIET,
                tags={
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1],
                },
            )
            chunked_s = time.perf_counter() - t
            assert chunk.success
            results.append(
                {
                    "method": "chunked",
                    "partitions": len(keys),
                    "runs": 1,
                    "wall_s": chunked_s,
                    "model_load_s": model_loads(instance, [chunk.run_id]),
                }
            )

    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for r in results:
            f.write(json.dumps({**r, "customers": args.customers}) + "\n")
    print(f"\nscore_daily over {args.partitions} partitions of ~{args.customers:,} customers, in process\n")
    print("| run shape | runs | wall s | s per partition | model loads | model load s (total) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['method']} | {r['runs']} | {r['wall_s']:.1f} | {r['wall_s'] / r['partitions']:.2f} | "
            f"{len(r['model_load_s'])} | {sum(r['model_load_s']):.3f} |"
        )
    print(f"\nresults in {out}")


if __name__ == "__main__":
    main()
