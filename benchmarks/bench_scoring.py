"""Scoring throughput against the raw-torch limit, measured in one run on the same threads.

    python benchmarks/bench_scoring.py [--rows 1000000] [--threads N]

Methods:
  limit      torch forward only, on an in-memory contiguous float32 tensor, at its best batch size
  scorer     replace_predictions_partition: DuckDB -> Arrow batches -> torch -> Arrow -> DuckDB, in one
             transaction, no Dagster
Writes one JSON line per measurement to benchmarks/results/latest.jsonl and prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batch_assets.observability import peak_rss_mb  # noqa: E402
from batch_assets.scoring.model_format import TabularMLP  # noqa: E402
from batch_assets.scoring.warehouse import ensure_schema, replace_predictions_partition  # noqa: E402

DAY = dt.date(2026, 9, 1)


def measure_limit(model: torch.nn.Module, x: torch.Tensor) -> tuple[float, int]:
    best, best_bs = 0.0, 0
    for bs in (8_192, 32_768, 65_536, 131_072):
        with torch.inference_mode():
            model(x[:bs])  # warm-up
            t = time.perf_counter()
            for start in range(0, len(x), bs):
                model(x[start : start + bs])
            rate = len(x) / (time.perf_counter() - t)
        if rate > best:
            best, best_bs = rate, bs
    return best, best_bs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch-rows", type=int, default=65_536)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cols = [f"f{i:02d}" for i in range(args.features)]
    model = TabularMLP(args.features, (256, 256)).eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(args.rows, args.features)).astype(np.float32))

    results = []
    limit, limit_bs = measure_limit(model, x)
    results.append({"method": "limit", "rows": args.rows, "rows_per_s": limit, "batch_rows": limit_bs})

    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "bench.duckdb"), config={"threads": args.threads})
        ensure_schema(con)
        col_defs = ", ".join(f"{c} DOUBLE" for c in cols)
        con.execute(f"CREATE TABLE features.bench (entity_id BIGINT, partition_date DATE, {col_defs})")
        gen = ", ".join(f"random() AS {c}" for c in cols)
        con.execute(
            f"INSERT INTO features.bench SELECT range, $day, {gen} FROM range($n)",
            {"day": DAY, "n": args.rows},
        )
        t = time.perf_counter()
        stats = replace_predictions_partition(
            con,
            day=DAY,
            module=model,
            features_table="features.bench",
            key="entity_id",
            feature_columns=cols,
            output_table="predictions.bench_scores",
            model_name="bench",
            model_version="1",
            run_id="bench",
            scored_at=dt.datetime.now(),
            batch_rows=args.batch_rows,
        )
        seconds = time.perf_counter() - t
        assert stats.rows_scored == args.rows
        results.append(
            {
                "method": "scorer",
                "rows": args.rows,
                "rows_per_s": args.rows / seconds,
                "batch_rows": args.batch_rows,
            }
        )
        con.close()

    rss = peak_rss_mb()
    out = Path(__file__).parent / "results" / "latest.jsonl"
    out.parent.mkdir(exist_ok=True)
    with out.open("w") as f:
        for r in results:
            r.update(
                ratio_to_limit=r["rows_per_s"] / limit,
                peak_rss_mb=round(rss, 1),
                threads=args.threads,
                features=args.features,
                torch=torch.__version__,
            )
            f.write(json.dumps(r) + "\n")
    print(
        f"\n{args.rows:,} rows x {args.features} features, MLP {args.features}->256->256->1, "
        f"{args.threads} threads\n"
    )
    print("| method | rows/s | ratio to limit |\n|---|---:|---:|")
    for r in results:
        print(f"| {r['method']} | {r['rows_per_s']:,.0f} | {r['ratio_to_limit']:.2f} |")
    print(f"\npeak RSS of the process: {rss:,.0f} MiB; results in {out}")


if __name__ == "__main__":
    main()
