"""A promotion's rollout end to end, through the Dagster daemon: how long re-scoring history takes.

    python benchmarks/bench_rollout.py [--days 60] [--rows 10000] [--rounds 2] [--interval 30] [--chunk N]
                                       [--runs N]

The benchmark is a scored dataset of its own, ``rollout_bench`` (a spec file loaded through
``BATCH_ASSETS_SPECS``, so the demo is untouched): its daily partitions start ``--days`` days before today,
so ``--days 365`` is a year of closed days. Its features table, ``bench.customer_daily``, holds the demo's
15 feature columns, ``--rows`` rows a day, written straight into the lake; version 1 of ``bench_model``
scores every day in process as setup. ``dagster dev`` (``--server dev``, as ``make dev`` runs it; or
``dagster-daemon run`` alone, ``--server daemon``) serves the embedded default (workspace.yaml,
its dagster.yaml: 4 runs and 4 scoring slots at once, or ``--runs`` of each) with the rollout sensors ticking every
``--interval`` seconds. Each round registers and promotes a new version and waits until every partition is
scored by it, the rollout's backfills are finished and the last check is stored. Between rounds, and
before the first, the scorer and the Delta write alone are timed in process on one partition
(``scorer+write``), so the rollout's rate is reported as a ratio to what the same machine scores and writes
at that moment.

Reported per round and as median and spread (max - min) / median over rounds: wall time from the
promotion to the last check stored (and to the backfill daemon marking the rollout's backfills done, up to
its 30 s loop later), the latency from the promotion to the canary's launch and from the canary's end to
the first chunk's launch, runs launched, model loads, effective rows/s, the ratio to scorer+write rows/s;
and the per-run overhead read from the runs' event logs: launch (RUN_STARTING) to the run process starting
(RUN_START: imports, code location load), and each step's duration (scoring, the check steps, the summary).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow as pa
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_assets.core.model_format import TabularMLP  # noqa: E402
from batch_assets.core.registry import ModelRegistry  # noqa: E402
from batch_assets.definitions import build_definitions  # noqa: E402
from batch_assets.demo.training import export_model  # noqa: E402
from batch_assets.history import scored_versions  # noqa: E402
from batch_assets.local_runs import QUIET, prepare_dagster_home  # noqa: E402
from batch_assets.sensors import ROLLOUT_ID_TAG, ROLLOUT_ROLE_TAG  # noqa: E402
from batch_assets.settings import Settings  # noqa: E402
from batch_assets.storage.lake import Lake  # noqa: E402
from batch_assets.storage.warehouse import (  # noqa: E402
    FEATURE_COLUMNS,
    connect_lake,
    replace_predictions_partition,
)
from tests.servers import dagster_dev  # noqa: E402

NAME = "rollout_bench"
MODEL = "bench_model"
PREDS = dg.AssetKey(["bench", NAME])
FEATURES = "bench.customer_daily"
SPEC = """\
name: rollout_bench
group: bench
partitioning: {{type: daily, start: "{start}"}}
features:
  asset: bench/customer_daily
  table: bench.customer_daily
  key: entity_id
  columns: {{{columns}}}
model: {{name: bench_model, alias: champion}}
output:
  table: bench.scores
  dead_letter_table: bench.dead_letters
  summary_table: bench.summary
"""


def features(day: dt.date, rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "entity_id": pa.array(np.arange(rows, dtype=np.int64) + 1),
            "partition_date": pa.array([day] * rows, pa.date32()),
            **{c: pa.array(rng.gamma(2.0, 2.0, rows)) for c in FEATURE_COLUMNS},
        }
    )


def new_model(tmp: Path, seed: int, x: np.ndarray) -> Path:
    import torch

    torch.manual_seed(seed)
    return export_model(
        TabularMLP(len(FEATURE_COLUMNS), (64, 32)).eval(),
        tmp / f"m{seed}.safetensors",
        feature_columns=FEATURE_COLUMNS,
        x_reference=x,
        training={"seed": seed},
    )


def scorer_write_rate(settings: Settings, registry: ModelRegistry, day: dt.date) -> float:
    """rows/s of the scorer and the Delta write alone, one partition, in process (the limit)."""
    info = registry.resolve(MODEL, "champion")
    module = registry.load(MODEL, info.version).module
    lake = Lake(settings.lake_location)
    with duckdb.connect() as con:
        connect_lake(con, lake)
        t = time.perf_counter()
        stats = replace_predictions_partition(
            con,
            lake,
            day=day,
            module=module,
            features_table=FEATURES,
            key="entity_id",
            feature_columns=info.feature_names,
            output_table="bench.limit_scores",
            dead_letter_table="bench.limit_dead_letters",
            model_name=MODEL,
            model_version=info.version,
            model_sha256=info.sha256,
            run_id="bench",
            scored_at=dt.datetime(2026, 1, 1),
        )
        return stats.rows_read / (time.perf_counter() - t)


def run_overheads(instance: dg.DagsterInstance, run_ids: list[str]) -> dict[str, list[float]]:
    """Seconds from launch to the run process starting, and per step kind, for each run."""
    out: dict[str, list[float]] = {"process_start": [], "scoring": [], "checks": [], "summary": []}
    for run_id in run_ids:
        starts, launch, begun = {}, None, None
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type
            if kind == dg.DagsterEventType.RUN_STARTING:
                launch = entry.timestamp
            elif kind == dg.DagsterEventType.RUN_START:
                begun = entry.timestamp
            elif kind == dg.DagsterEventType.STEP_START:
                starts[event.step_key] = entry.timestamp
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE) and (
                event.step_key in starts
            ):
                took = entry.timestamp - starts[event.step_key]
                key = event.step_key
                what = "checks" if key.endswith("_checks") else "summary" if "summary" in key else "scoring"
                out[what].append(took)
        if launch and begun:
            out["process_start"].append(begun - launch)
    return out


def timeline(instance: dg.DagsterInstance, runs: list, t0: float) -> dict[str, float | None]:
    """When, after the promotion at ``t0``: the canary was launched, the first chunk run was launched after
    the canary ended (the sensor tick plus the backfill daemon's loop), and the last check was stored."""
    canary = [r for r in runs if r.tags.get(ROLLOUT_ROLE_TAG) == "canary"]
    chunks = [r for r in runs if r.tags.get(ROLLOUT_ROLE_TAG) != "canary"]

    def first(run, kind):
        for entry in instance.all_logs(run.run_id, of_type=kind):
            return entry.timestamp
        return None

    checks = [
        e.timestamp
        for r in runs
        for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    out: dict[str, float | None] = {"last_check_s": max(checks) - t0 if checks else None}
    canary_start = first(canary[0], dg.DagsterEventType.RUN_STARTING) if canary else None
    canary_end = first(canary[0], dg.DagsterEventType.RUN_SUCCESS) if canary else None
    chunk_starts = [t for t in (first(r, dg.DagsterEventType.RUN_STARTING) for r in chunks) if t]
    out["promotion_to_canary_s"] = canary_start - t0 if canary_start else None
    if canary:  # the sensor's part (the run is created on its tick) and the run queue's (to its launch)
        created = instance.get_run_records(dg.RunsFilter(run_ids=[canary[0].run_id]))[0].create_timestamp
        out["promotion_to_canary_created_s"] = created.timestamp() - t0
    chunk_created = [
        r.create_timestamp.timestamp()
        for r in instance.get_run_records(dg.RunsFilter(run_ids=[r.run_id for r in chunks]))
    ]
    if chunk_created and canary_end:
        out["canary_to_first_chunk_created_s"] = min(chunk_created) - canary_end
    out["canary_to_first_chunk_s"] = min(chunk_starts) - canary_end if chunk_starts and canary_end else None
    return out


def wait_for_rollout(instance, version: str, rid: str, days: list[str], timeout: float) -> float:
    deadline = time.time() + timeout
    while time.time() < deadline:
        scored = scored_versions(instance, PREDS)
        if all(scored.get(d) == version for d in days):
            runs = instance.get_runs(filters=dg.RunsFilter(tags={ROLLOUT_ID_TAG: rid}))
            if runs and all(r.is_finished for r in runs):
                backfills = instance.get_backfills()
                if all(b.status.value != "REQUESTED" for b in backfills if b.tags.get(ROLLOUT_ID_TAG) == rid):
                    return time.time()
        time.sleep(1)
    raise TimeoutError(f"rollout {rid} did not finish within {timeout:.0f} s")


@contextmanager
def serve(server: str, home: Path, dagster_home: Path, env: dict[str, str]) -> Iterator[None]:
    """``dagster dev`` as ``make dev`` runs it (webserver and daemon sharing one code server), or
    ``dagster-daemon run`` alone (which starts a fresh code server every minute: about 10 s of CPU each)."""
    if server == "dev":
        with dagster_dev(home, dagster_home, env=env):
            yield
        return
    with (home / "daemon.log").open("w") as log:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            time.sleep(10)  # the daemon loads the code location; its sensor's first tick finds nothing to do
            yield
        finally:
            os.killpg(daemon.pid, 15)
            daemon.wait(timeout=60)


def spread(values: list[float]) -> float:
    med = statistics.median(values)
    return (max(values) - min(values)) / med if med else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--interval", type=int, default=30, help="rollout sensor interval, seconds")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rollout.jsonl")
    ap.add_argument("--chunk", type=int, default=None, help="backfill_chunk of the spec (default: its own)")
    ap.add_argument(
        "--server", choices=("dev", "daemon"), default="dev", help="dagster dev, or dagster-daemon alone"
    )
    ap.add_argument(
        "--runs", type=int, default=None, help="concurrent runs and scoring slots (default: dagster.yaml's)"
    )
    args = ap.parse_args()
    first = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=args.days + 1)

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        spec_file = tmp / "rollout_bench.yaml"
        spec_text = SPEC.format(
            start=first.isoformat(), columns=", ".join(f"{c}: null" for c in FEATURE_COLUMNS)
        )
        if args.chunk:
            spec_text += f"scoring: {{backfill_chunk: {args.chunk}}}\n"
        spec_file.write_text(spec_text)
        os.environ["BATCH_ASSETS_SPECS"] = str(spec_file)
        settings = Settings(home=tmp / "home", spec_locations=(spec_file,)).ensure()
        dagster_home = prepare_dagster_home(settings)
        if args.runs:
            conf_path = dagster_home / "dagster.yaml"
            conf = yaml.safe_load(conf_path.read_text())
            conf["concurrency"]["runs"]["max_concurrent_runs"] = args.runs
            conf["concurrency"]["pools"]["default_limit"] = args.runs
            conf_path.write_text(yaml.safe_dump(conf))
        lake = Lake(settings.lake_location)
        days = [first + dt.timedelta(days=i) for i in range(args.days)]
        # the demo's 15 feature columns, --rows a day, written straight into the lake
        for i, day in enumerate(days):
            table = features(day, args.rows, seed=i)
            lake.replace_partition(FEATURES, table.schema, day, table)
        ref = lake.table(FEATURES).to_pyarrow_dataset().to_table(columns=list(FEATURE_COLUMNS))
        x = np.column_stack([ref.column(c).to_numpy() for c in FEATURE_COLUMNS]).astype(np.float32)[::50]
        registry = ModelRegistry(settings.registry)
        registry.promote(MODEL, registry.register(MODEL, new_model(tmp, 1, x)).version)
        keys = [d.isoformat() for d in days]
        os.environ["BATCH_ASSETS_HOME"] = str(settings.home)
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        defs = build_definitions(settings)
        job = defs.resolve_job_def(f"score_{NAME}")
        print(f"setup: scoring {args.days} days x {args.rows:,} rows with version 1 (in process)", flush=True)
        with dg.DagsterInstance.get() as instance:
            for i in range(0, len(keys), 30):
                part = keys[i : i + 30]
                result = job.execute_in_process(
                    instance=instance,
                    run_config=QUIET,
                    raise_on_error=False,
                    tags={
                        "dagster/asset_partition_range_start": part[0],
                        "dagster/asset_partition_range_end": part[-1],
                    },
                )
                assert result.success, f"setup run over {part[0]}..{part[-1]} failed"

        env = {"BATCH_ASSETS_ROLLOUT_INTERVAL_S": str(args.interval)}
        rounds = []
        with serve(args.server, settings.home, dagster_home, env):
            limits = [scorer_write_rate(settings, registry, days[0])]
            with dg.DagsterInstance.get() as instance:
                for r in range(args.rounds):
                    seed = r + 2
                    version = registry.register(MODEL, new_model(tmp, seed, x)).version
                    t0 = time.time()
                    registry.promote(MODEL, version)
                    rid = f"{version}#1"
                    print(f"round {r + 1}: promoted version {version}, waiting for the rollout", flush=True)
                    t1 = wait_for_rollout(instance, version, rid, keys, args.timeout)
                    runs = instance.get_runs(filters=dg.RunsFilter(tags={ROLLOUT_ID_TAG: rid}))
                    run_ids = [run.run_id for run in runs]
                    over = run_overheads(instance, run_ids)
                    when = timeline(instance, list(runs), t0)
                    wall = when.pop("last_check_s") or t1 - t0
                    rows = args.days * args.rows
                    limits.append(scorer_write_rate(settings, registry, days[0]))
                    limit = statistics.median(limits[-2:])
                    rounds.append(
                        {
                            "round": r + 1,
                            "version": version,
                            "wall_s": wall,
                            "backfills_marked_done_s": t1 - t0,
                            "runs": len(runs),
                            "model_loads": len(over["scoring"]),
                            "rows_per_s": rows / wall,
                            "scorer_write_rows_per_s": limit,
                            "ratio": rows / wall / limit,
                            **when,
                            **{f"{k}_s_median": statistics.median(v) if v else None for k, v in over.items()},
                        }
                    )
                    print(json.dumps(rounds[-1]), flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for r in rounds:
            f.write(
                json.dumps(
                    {**r, "days": args.days, "rows": args.rows, "chunk": args.chunk, "runs": args.runs}
                )
                + "\n"
            )
    print(
        f"\nrollout of {args.days} days x {args.rows:,} rows through {args.server}, chunk {args.chunk or 'default'}, runs {args.runs or 'default'}, {args.rounds} rounds\n"
    )
    print("| figure | median | spread |")
    print("|---|---:|---:|")
    for name in (
        "wall_s",
        "backfills_marked_done_s",
        "promotion_to_canary_s",
        "canary_to_first_chunk_s",
        "promotion_to_canary_created_s",
        "canary_to_first_chunk_created_s",
        "runs",
        "model_loads",
        "rows_per_s",
        "scorer_write_rows_per_s",
        "ratio",
    ):
        values = [float(r[name]) for r in rounds if r.get(name) is not None]
        if not values:
            continue
        print(f"| {name} | {statistics.median(values):.4g} | {spread(values):.0%} |")
    for name in ("process_start", "scoring", "checks", "summary"):
        values = [r[f"{name}_s_median"] for r in rounds if r[f"{name}_s_median"] is not None]
        if values:
            print(
                f"| per run: {name} s (median of runs) | {statistics.median(values):.2f} | {spread(values):.0%} |"
            )
    print(f"\nresults in {args.out}")


if __name__ == "__main__":
    main()
