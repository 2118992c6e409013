"""Scoring throughput and memory against the raw-torch limit, measured in one run on the same threads.

    python benchmarks/bench_scoring.py [--rows 1000000] [--full] [--threads N] [--ray]

Every method runs in its own subprocess over the same DuckDB features table and the same registered model
(32 float features, MLP 32->256->256->1 with a sigmoid), so each one's peak RSS is its own:

  limit          torch forward only, on an in-memory contiguous float32 tensor, at its best batch size
  scorer         our scoring function: DuckDB -> Arrow record batches -> numpy -> torch -> Arrow (no write,
                 no Dagster)
  scorer+write   the same plus the transactional partition write into DuckDB (still no Dagster)
  partition      a `predictions` partition materialized through Dagster (read, score, transactional write),
                 with checks off, and with the five prediction checks on
  naive          pandas `DataFrame.apply` calling the model once per row (on a --naive-rows subset)
  ray            Ray Data `map_batches` with an actor pool (only with --ray and when `ray` is installed)

`--full` adds a second size of 4x the rows (4M by default) for the streaming methods, to show memory does not
grow with the partition. Writes one JSON line per measurement to benchmarks/results/latest.jsonl and prints a
markdown table with the ratios to the limit of the same size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = dt.date(2026, 9, 1)
MODEL = "bench_model"
FEATURES_TABLE = "features.bench"
HIDDEN = (256, 256)
# DuckDB's buffer pool caches every block it reads, up to 80% of RAM by default, so a process's RSS grows with
# the table it scanned, not with what the scorer holds. The streaming methods run with the limit a deployment
# sets through BATCH_ASSETS_DUCKDB_MEMORY_LIMIT.
MEMORY_LIMIT = os.environ.get("BATCH_ASSETS_DUCKDB_MEMORY_LIMIT", "512MB")


def _columns(n: int) -> list[str]:
    return [f"f{i:02d}" for i in range(n)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _children_rss_mb() -> float:
    """Resident memory of this process's descendants now (Ray's raylet, workers, object store)."""
    me, total = os.getpid(), 0
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(d.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    for pid in parents:
        p = pid
        while p in parents and p != me and p > 1:
            p = parents[p]
        if p == me and pid != me:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                continue
    return total / 1024


# -- preparing the data (one subprocess, not measured) --------------------------------------------------


def prepare(home: Path, rows: int, features: int) -> None:
    import duckdb
    import numpy as np
    import torch

    from batch_assets.scoring.model_format import TabularMLP
    from batch_assets.scoring.registry import ModelRegistry
    from batch_assets.scoring.training import export_model
    from batch_assets.scoring.warehouse import ensure_schema

    cols = _columns(features)
    con = duckdb.connect(str(home / "warehouse.duckdb"))
    ensure_schema(con)
    con.execute(
        f"CREATE TABLE {FEATURES_TABLE} (entity_id BIGINT, partition_date DATE, "
        + ", ".join(f"{c} DOUBLE" for c in cols)
        + ")"
    )
    gen = ", ".join(f"(random() * 4 - 2) AS {c}" for c in cols)  # uniform, mean 0: in the model's range
    con.execute("SELECT setseed(0.42)")
    con.execute(
        f"INSERT INTO {FEATURES_TABLE} SELECT range, $day, {gen} FROM range($n)", {"day": DAY, "n": rows}
    )
    sample = con.execute(
        f"SELECT {', '.join(cols)} FROM {FEATURES_TABLE} USING SAMPLE 4096 ROWS"
    ).fetchnumpy()
    con.close()
    torch.manual_seed(0)
    model = TabularMLP(features, HIDDEN).eval()
    x_ref = np.column_stack([sample[c] for c in cols]).astype(np.float32)
    artifact = export_model(
        model,
        home / "bench.safetensors",
        feature_columns=cols,
        x_reference=x_ref,
        training={"window": ["benchmark", "benchmark"]},
        description="benchmark reference MLP",
    )
    reg = ModelRegistry(home / "registry")
    info = reg.register(MODEL, artifact)
    reg.promote(MODEL, info.version, "champion", actor="benchmark")


def _load_model(home: Path):
    from batch_assets.scoring.registry import ModelRegistry

    reg = ModelRegistry(home / "registry")
    info = reg.resolve(MODEL, "champion")
    return reg.load(MODEL, info.version).module, info.feature_names


# -- the methods (each in its own subprocess) -------------------------------------------------------------


def m_limit(home: Path, rows: int, threads: int) -> dict:
    import duckdb
    import numpy as np
    import torch

    model, cols = _load_model(home)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    data = con.execute(f"SELECT {', '.join(cols)} FROM {FEATURES_TABLE}").fetchnumpy()
    con.close()
    x = torch.from_numpy(np.ascontiguousarray(np.column_stack([data[c] for c in cols]), dtype=np.float32))
    del data
    best, best_bs = 0.0, 0
    with torch.inference_mode():
        for bs in (512, 1024, 2048, 4096, 8192, 16384, 65536):
            model(x[:bs])  # warm-up
            rate = 0.0
            for _ in range(2):
                t = time.perf_counter()
                for start in range(0, len(x), bs):
                    model(x[start : start + bs])
                rate = max(rate, len(x) / (time.perf_counter() - t))
            if rate > best:
                best, best_bs = rate, bs
    return {"rows_per_s": best, "batch_rows": best_bs}


def m_scorer(home: Path, rows: int, threads: int) -> dict:
    import duckdb

    from batch_assets.scoring.scorer import ScoreStats, batch_rows_for, forward_rows_for, score_batches

    model, cols = _load_model(home)
    con = duckdb.connect(
        str(home / "warehouse.duckdb"),
        read_only=True,
        config={"threads": threads, "memory_limit": MEMORY_LIMIT},
    )
    t = time.perf_counter()
    reader = con.sql(
        f"SELECT entity_id, {', '.join(cols)} FROM {FEATURES_TABLE} WHERE partition_date = $day",
        params={"day": DAY},
    ).to_arrow_reader(batch_rows_for(len(cols)))
    stats = ScoreStats()
    n = 0
    for part in score_batches(model, reader, key="entity_id", features=cols, stats=stats):
        n += part.scored.num_rows
    seconds = time.perf_counter() - t
    reader.close()
    con.close()
    assert n == rows, (n, rows)
    return {
        "rows_per_s": rows / seconds,
        "seconds": seconds,
        "batch_rows": batch_rows_for(len(cols)),
        "forward_rows": forward_rows_for(model),
    }


def m_scorer_write(home: Path, rows: int, threads: int) -> dict:
    import duckdb

    from batch_assets.scoring.warehouse import replace_predictions_partition

    model, cols = _load_model(home)
    con = duckdb.connect(
        str(home / "warehouse.duckdb"), config={"threads": threads, "memory_limit": MEMORY_LIMIT}
    )
    t = time.perf_counter()
    stats = replace_predictions_partition(
        con,
        day=DAY,
        module=model,
        features_table=FEATURES_TABLE,
        key="entity_id",
        feature_columns=cols,
        output_table="predictions.bench_scores_direct",
        model_name=MODEL,
        model_version="1",
        run_id="bench",
        scored_at=dt.datetime.now(),
    )
    seconds = time.perf_counter() - t
    con.close()
    assert stats.rows_scored == rows, (stats.rows_scored, rows)
    return {"rows_per_s": rows / seconds, "seconds": seconds}


def _partition(home: Path, rows: int, threads: int, checks: bool) -> dict:
    import dagster as dg

    from batch_assets.checks import build_checks
    from batch_assets.predictions import ScoredDatasetSpec, build_scored_asset
    from resources import (
        ComputeResource,
        LakeResource,
        MetricsResource,
        ModelRegistryResource,
        WarehouseResource,
    )

    spec = ScoredDatasetSpec(
        name="bench_scores",
        features_asset=dg.AssetKey(["features", "bench"]),
        features_table=FEATURES_TABLE,
        model_name=MODEL,
        output_table="predictions.bench_scores",
        summary_table="predictions.bench_summary",
    )
    asset = build_scored_asset(spec)
    targets: list = [asset]
    if checks:
        targets += [c for c in build_checks(spec) if spec.asset_key in {k.asset_key for k in c.check_keys}]
    resources = {
        "warehouse": WarehouseResource(
            database=str(home / "warehouse.duckdb"), threads=threads, memory_limit=MEMORY_LIMIT
        ),
        "model_registry": ModelRegistryResource(root=str(home / "registry")),
        "compute": ComputeResource(torch_threads=threads),
        "lake": LakeResource(uri=""),  # no Parquet copy
        "metrics": MetricsResource(),  # no Pushgateway
    }
    with dg.DagsterInstance.ephemeral() as instance:
        t = time.perf_counter()
        result = dg.materialize(
            targets, partition_key=DAY.isoformat(), instance=instance, resources=resources
        )
        seconds = time.perf_counter() - t
    assert result.success
    md = result.asset_materializations_for_node(asset.op.name)[0].metadata
    assert md["dagster/row_count"].value == rows
    return {
        "rows_per_s": rows / seconds,
        "seconds": seconds,
        "asset_rows_per_s": md["rows_per_s"].value,
        "model_load_s": md["model_load_s"].value,
        "checks": len(result.get_asset_check_evaluations()),
    }


def m_partition(home: Path, rows: int, threads: int) -> dict:
    return _partition(home, rows, threads, checks=False)


def m_partition_checks(home: Path, rows: int, threads: int) -> dict:
    return _partition(home, rows, threads, checks=True)


def m_naive(home: Path, rows: int, threads: int) -> dict:
    import duckdb
    import torch

    model, cols = _load_model(home)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    df = con.execute(
        f"SELECT entity_id, {', '.join(cols)} FROM {FEATURES_TABLE} ORDER BY entity_id LIMIT $n", {"n": rows}
    ).df()
    con.close()

    def score(row) -> float:
        with torch.inference_mode():
            return float(model(torch.tensor(row[cols].to_numpy(dtype="float32")).unsqueeze(0)))

    t = time.perf_counter()
    scores = df.apply(score, axis=1)
    seconds = time.perf_counter() - t
    assert len(scores) == rows
    return {"rows_per_s": rows / seconds, "seconds": seconds}


def m_ray(home: Path, rows: int, threads: int) -> dict:
    import duckdb
    import numpy as np
    import ray  # optional: pip install 'ray[data]'
    import torch

    _, cols = _load_model(home)
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    table = con.execute(f"SELECT entity_id, {', '.join(cols)} FROM {FEATURES_TABLE}").to_arrow_table()
    con.close()
    ray.init(num_cpus=threads, include_dashboard=False, log_to_driver=False)

    class Scorer:
        def __init__(self) -> None:
            torch.set_num_threads(1)
            self.model, self.cols = _load_model(home)

        def __call__(self, batch: dict) -> dict:
            x = np.column_stack([batch[c] for c in self.cols]).astype(np.float32)
            with torch.inference_mode():
                return {"entity_id": batch["entity_id"], "score": self.model(torch.from_numpy(x)).numpy()}

    peak = [0.0]
    t = time.perf_counter()
    ds = ray.data.from_arrow(table).map_batches(
        Scorer, batch_size=8192, concurrency=threads, batch_format="numpy"
    )
    n = 0
    for batch in ds.iter_batches(batch_size=65536, batch_format="numpy"):
        n += len(batch["score"])
        peak[0] = max(peak[0], _children_rss_mb())
    seconds = time.perf_counter() - t
    ray.shutdown()
    assert n == rows
    return {"rows_per_s": rows / seconds, "seconds": seconds, "peak_rss_mb_all_processes": peak[0]}


METHODS = {
    "limit": m_limit,
    "scorer": m_scorer,
    "scorer+write": m_scorer_write,
    "partition": m_partition,
    "partition+checks": m_partition_checks,
    "naive": m_naive,
    "ray": m_ray,
}


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    home = Path(args.home)
    if args.method == "prepare":
        prepare(home, args.rows, args.features)
        return
    out = METHODS[args.method](home, args.rows, args.threads)
    out = {"method": args.method, "rows": args.rows, **out, "peak_rss_mb": round(_peak_rss_mb(), 1)}
    if "peak_rss_mb_all_processes" in out:
        out["peak_rss_mb"] = round(out["peak_rss_mb"] + out.pop("peak_rss_mb_all_processes"), 1)
    print("RESULT " + json.dumps(out), flush=True)


def run_child(method: str, home: Path, rows: int, args: argparse.Namespace) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--home",
        str(home),
        "--rows",
        str(rows),
        "--threads",
        str(args.threads),
        "--features",
        str(args.features),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "PYTHONWARNINGS": "ignore",
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if method == "prepare":
        if proc.returncode != 0:
            raise SystemExit(f"preparing {rows:,} rows failed:\n{proc.stderr[-3000:]}")
        return None
    if proc.returncode != 0 or not lines:
        print(f"  {method} at {rows:,} rows failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--full", action="store_true", help="also measure 4x --rows (4M by default)")
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--naive-rows", type=int, default=20_000)
    ap.add_argument(
        "--ray", action="store_true", help="also measure Ray Data (needs `pip install 'ray[data]'`)"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.method = args.child
        child(args)
        return

    import torch

    sizes = [args.rows] + ([args.rows * 4] if args.full else [])
    methods = ["limit", "scorer", "scorer+write", "partition", "partition+checks", "naive"]
    if args.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            print("ray is not installed: skipping the Ray Data measurement", file=sys.stderr)
        else:
            methods.append("ray")
    machine = (
        f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, torch {torch.__version__}"
    )
    results: list[dict] = []
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
            home = Path(tmp)
            print(f"preparing {rows:,} rows x {args.features} features ...", file=sys.stderr, flush=True)
            run_child("prepare", home, rows, args)
            limit = None
            for method in methods:
                if method in ("naive", "ray", "partition+checks") and rows != sizes[0]:
                    continue  # the subset and the slow paths are measured once
                n = min(rows, args.naive_rows) if method == "naive" else rows
                print(f"  {method} ({n:,} rows) ...", file=sys.stderr, flush=True)
                r = run_child(method, home, n, args)
                if r is None:
                    continue
                if method == "limit":
                    limit = r["rows_per_s"]
                r.update(
                    ratio_to_limit=r["rows_per_s"] / limit if limit else None,
                    threads=args.threads,
                    features=args.features,
                    machine=machine,
                    at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                )
                results.append(r)

    out = Path(__file__).parent / "results" / "latest.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in results))
    print(f"\nMLP {args.features}->256->256->1 (sigmoid); {machine}\n")
    print("| method | rows | rows/s | ratio to limit | peak RSS (MiB) |\n|---|---:|---:|---:|---:|")
    for r in results:
        ratio = f"{r['ratio_to_limit']:.2f}" if r["ratio_to_limit"] is not None else "-"
        print(
            f"| {r['method']} | {r['rows']:,} | {r['rows_per_s']:,.0f} | {ratio} | {r['peak_rss_mb']:,.0f} |"
        )
    by = {(r["method"], r["rows"]): r for r in results}
    base = sizes[0]
    lines = []
    if ("naive", min(base, args.naive_rows)) in by and ("scorer", base) in by:
        speedup = by[("scorer", base)]["rows_per_s"] / by[("naive", min(base, args.naive_rows))]["rows_per_s"]
        lines.append(f"scorer vs naive per-row apply: {speedup:,.0f}x")
    if ("ray", base) in by and ("scorer", base) in by:
        s, r = by[("scorer", base)], by[("ray", base)]
        lines.append(
            f"scorer vs Ray Data: {s['rows_per_s'] / r['rows_per_s']:.1f}x the rows/s at "
            f"{s['peak_rss_mb'] / r['peak_rss_mb']:.2f}x the memory"
        )
    if args.full and ("partition", base) in by and ("partition", sizes[1]) in by:
        ratio = by[("partition", sizes[1])]["peak_rss_mb"] / by[("partition", base)]["peak_rss_mb"]
        lines.append(f"partition peak RSS at {sizes[1]:,} rows / at {base:,} rows: {ratio:.2f}")
    print("\n" + "\n".join(lines) + f"\n\nresults in {out}")


if __name__ == "__main__":
    main()
