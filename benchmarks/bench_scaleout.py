"""Scale-out of a backfill over the lake: N partitions scored by 1, 2 and 4 concurrent writer processes.

    python benchmarks/bench_scaleout.py [--partitions 16] [--rows 100000] [--writers 1,2,4] [--rounds 3]
                                        [--storage local,s3] [--pods 16]

One lake per storage (a local folder, and a bucket on moto's S3 server on 127.0.0.1 when moto is installed)
holds ``--partitions`` days of ``features.customer_daily`` (``--rows`` customers each, the demo's 15
features) and a model (MLP 15->64->32->1) sits in a local registry. Each configuration (storage x writers)
scores every partition once into fresh tables: the writers are **spawned** subprocesses (a Delta writer in
a forked process panics), each loads the model once, registers the features table on an in-memory DuckDB
connection and, once every writer is ready, scores its share of the partitions (round robin) with
``replace_predictions_partition``: one predictions commit and one dead-letters commit per partition, all
writers committing to the same two tables at once. Process start, imports and model load are left out of
the wall time (the writers wait for a common start); each writer gets cpus // writers torch and DuckDB
threads (at least 1, so 4 writers on 2 cores oversubscribe them).

After every run the tables are verified: the exact row count in every partition, no duplicate key, and
exactly one Delta commit per partition write in each table's history. Reported per configuration (median
of interleaved rounds 1, 2, 4, 1, 2, 4, ... and the spread (max - min) / median): wall time, rows/s, the
wall-time ratio to 1 writer, CommitConflict errors (a same-partition race: 0 expected, since partitions
differ), delta-rs's own commit retries (``num_retries`` in the log: commits that landed between a writer's
read and its commit, each costing a failed conditional PUT on S3 and a read of the winner) and, on S3, the
requests each partition cost (counted from moto's request log). Writes benchmarks/results/scaleout.jsonl.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FIRST_DAY = dt.date(2026, 9, 1)
FEATURES = "features.customer_daily"
MODEL = "scaleout_model"
HIDDEN = (64, 32)
BUCKET = "bench-scaleout"
MAX_CONFLICT_RETRIES = 5  # a CommitConflict is retried this often before the writer gives up
# S3's documented request rates per partitioned prefix (the Delta log of a table is one prefix).
S3_WRITES_PER_S, S3_READS_PER_S = 3_500, 5_500
REQUEST_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP/[0-9.]+')


def days(partitions: int) -> list[dt.date]:
    return [FIRST_DAY + dt.timedelta(days=i) for i in range(partitions)]


def s3_options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }


# -- the writer (a spawned subprocess) ------------------------------------------------------------------


def worker(spec: dict) -> None:
    """Score ``spec['days']`` into ``spec['output']``; print READY, wait for a line on stdin, then RESULT."""
    import duckdb
    import torch

    from batch_assets.core.registry import ModelRegistry
    from batch_assets.storage.lake import CommitConflict, Lake
    from batch_assets.storage.warehouse import replace_predictions_partition

    threads = spec["threads"]
    torch.set_num_threads(threads)
    lake = Lake(spec["root"], spec["storage_options"])
    commit_s: list[tuple[str, float]] = []
    original = Lake.replace_partition

    # the time of each commit, by table (the dead-letters commit of clean rows is a bare commit)
    def timed(self, table, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, table, *args, **kwargs)
        finally:
            commit_s.append((table, time.perf_counter() - t))

    Lake.replace_partition = timed  # type: ignore[method-assign]
    reg = ModelRegistry(Path(spec["registry"]))
    info = reg.resolve(MODEL, "champion")
    module = reg.load(MODEL, info.version).module
    con = duckdb.connect(":memory:", config={"threads": threads})
    lake.register(con, [FEATURES])
    print("READY", flush=True)
    if not sys.stdin.readline():  # the parent went away before the start
        sys.exit(1)
    start = time.time()
    partitions, conflicts = [], 0
    for day in (dt.date.fromisoformat(d) for d in spec["days"]):
        t = time.perf_counter()
        attempt = 0
        while True:
            try:
                stats = replace_predictions_partition(
                    con,
                    lake,
                    day=day,
                    module=module,
                    features_table=FEATURES,
                    key="entity_id",
                    feature_columns=info.feature_names,
                    output_table=spec["output"],
                    dead_letter_table=spec["dead"],
                    model_name=MODEL,
                    model_version=info.version,
                    model_sha256=info.sha256,
                    run_id=spec["run_id"],
                    scored_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                )
                break
            except CommitConflict as exc:
                conflicts += 1
                attempt += 1
                print(f"CONFLICT {day}: {exc}", file=sys.stderr, flush=True)
                if attempt > MAX_CONFLICT_RETRIES:
                    raise
        partitions.append(
            {"day": day.isoformat(), "seconds": time.perf_counter() - t, "rows": stats.rows_scored}
        )
    end = time.time()
    con.close()
    out = {
        "start": start,
        "end": end,
        "partitions": partitions,
        "conflicts": conflicts,
        "predictions_commit_s": [s for tbl, s in commit_s if tbl == spec["output"]],
        "dead_letters_commit_s": [s for tbl, s in commit_s if tbl == spec["dead"]],
    }
    print("RESULT " + json.dumps(out), flush=True)


# -- preparing a lake (not measured) ---------------------------------------------------------------------


def prepare_features(root: str, options: dict[str, str], partitions: int, rows: int) -> None:
    import duckdb

    from batch_assets.storage.lake import Lake
    from batch_assets.storage.warehouse import FEATURE_COLUMNS, FEATURES_SCHEMA

    lake = Lake(root, options)
    con = duckdb.connect(":memory:")
    con.execute("SELECT setseed(0.17)").fetchall()
    gen = ", ".join(f"(random() * 4 - 2) AS {c}" for c in FEATURE_COLUMNS)
    for day in days(partitions):
        reader = con.sql(
            f"SELECT range AS entity_id, $day::DATE AS partition_date, {gen} FROM range($n)",
            params={"day": day, "n": rows},
        ).to_arrow_reader(65_536)
        lake.replace_partition(FEATURES, FEATURES_SCHEMA, day, reader, {"bench": "scaleout"})
    con.close()


def prepare_model(registry: Path) -> None:
    import numpy as np
    import torch

    from batch_assets.core.model_format import TabularMLP
    from batch_assets.core.registry import ModelRegistry
    from batch_assets.demo.training import export_model
    from batch_assets.storage.warehouse import FEATURE_COLUMNS

    torch.manual_seed(0)
    model = TabularMLP(len(FEATURE_COLUMNS), HIDDEN).eval()
    x_ref = np.random.default_rng(0).uniform(-2, 2, (4096, len(FEATURE_COLUMNS))).astype(np.float32)
    artifact = export_model(
        model,
        registry.parent / "scaleout.safetensors",
        feature_columns=FEATURE_COLUMNS,
        x_reference=x_ref,
        training={"window": ["benchmark", "benchmark"]},
        description="scale-out benchmark MLP",
    )
    reg = ModelRegistry(registry)
    info = reg.register(MODEL, artifact)
    reg.promote(MODEL, info.version, "champion", actor="benchmark")


# -- one configuration -------------------------------------------------------------------------------


def run_config(storage: dict, writers: int, round_no: int, args: argparse.Namespace, registry: Path) -> dict:
    from batch_assets.storage.lake import Lake
    from batch_assets.storage.warehouse import dead_letters_schema, predictions_schema

    lake = Lake(storage["root"], storage["options"])
    output = f"predictions.scores_w{writers}_r{round_no}"
    dead = f"predictions.dead_w{writers}_r{round_no}"
    # the tables exist before a backfill: creating them is not timed
    lake.ensure(output, predictions_schema())
    lake.ensure(dead, dead_letters_schema())
    all_days = [d.isoformat() for d in days(args.partitions)]
    threads = args.threads_per_writer or max(1, len(os.sched_getaffinity(0)) // writers)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    procs = []
    for w in range(writers):
        spec = {
            "root": storage["root"],
            "storage_options": storage["options"],
            "registry": str(registry),
            "output": output,
            "dead": dead,
            "days": all_days[w::writers],
            "run_id": f"scaleout-{storage['name']}-w{writers}-r{round_no}-{w}",
            "threads": threads,
        }
        procs.append(
            subprocess.Popen(  # fork + exec: a fresh interpreter, not a forked Delta runtime
                [sys.executable, __file__, "--worker", json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    for p in procs:
        line = p.stdout.readline()
        if line.strip() != "READY":
            for q in procs:
                q.kill()
            raise SystemExit(f"a writer did not start: {line}{p.stderr.read()[-3000:]}")
    log_mark = storage["log"].stat().st_size if storage.get("log") else 0
    go = time.time()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results, errors = [], []
    for p in procs:
        out, err = p.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
        if p.returncode != 0 or not lines:
            errors.append(err[-3000:])
            continue
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    if errors:
        raise SystemExit(f"{storage['name']}, {writers} writers: a writer failed:\n" + "\n".join(errors))
    wall = max(r["end"] for r in results) - go
    if storage.get("log"):
        time.sleep(0.2)  # moto logs a request once it has answered it
    requests = count_requests(storage["log"], log_mark) if storage.get("log") else None
    check = verify(lake, output, dead, all_days, args.rows)
    part_s = [p["seconds"] for r in results for p in r["partitions"]]
    return {
        "storage": storage["name"],
        "writers": writers,
        "round": round_no,
        "threads_per_writer": threads,
        "partitions": args.partitions,
        "rows_per_partition": args.rows,
        "wall_s": wall,
        "rows_per_s": args.partitions * args.rows / wall,
        "partition_s_median": statistics.median(part_s),
        "conflicts": sum(r["conflicts"] for r in results),
        "predictions_commit_s_median": statistics.median(
            s for r in results for s in r["predictions_commit_s"]
        ),
        "dead_letters_commit_s_median": statistics.median(
            s for r in results for s in r["dead_letters_commit_s"]
        ),
        "requests": requests,
        **check,
    }


def verify(lake, output: str, dead: str, all_days: list[str], rows: int) -> dict:
    """Exact rows and no duplicate key per partition; one commit per partition write in each table."""
    import duckdb

    con = duckdb.connect(":memory:")
    lake.register(con, [output, dead])
    got = {
        str(d): (n, distinct)
        for d, n, distinct in con.execute(
            f"SELECT partition_date, count(*), count(DISTINCT entity_id) FROM {output} GROUP BY 1"  # noqa: S608
        ).fetchall()
    }
    dead_rows = con.execute(f"SELECT count(*) FROM {dead}").fetchall()[0][0]  # noqa: S608
    con.close()
    problems = []
    if sorted(got) != sorted(all_days):
        problems.append(f"partitions {sorted(set(all_days) ^ set(got))} missing or unexpected")
    for d, (n, distinct) in sorted(got.items()):
        if n != rows:
            problems.append(f"{d}: {n} rows, expected {rows}")
        if distinct != n:
            problems.append(f"{d}: {n - distinct} duplicate keys")
    retries = 0
    commits = 0
    for table in (output, dead):
        writes = [h for h in lake.table(table).history() if h.get("operation") == "WRITE"]
        commits += len(writes)
        retries += sum(int((h.get("operationMetrics") or {}).get("num_retries") or 0) for h in writes)
        per_partition: dict[str, int] = {}
        for w in lake.history(table):
            if w.operation == "WRITE":
                per_partition[w.partition or "?"] = per_partition.get(w.partition or "?", 0) + 1
        wrong = {p: c for p, c in per_partition.items() if c != 1}
        if sorted(per_partition) != sorted(all_days) or wrong:
            problems.append(f"{table}: commits per partition {wrong or per_partition}, expected 1 for each")
    return {
        "verified": not problems,
        "problems": problems,
        "commits": commits,
        "commit_retries": retries,
        "dead_letters": dead_rows,
    }


def count_requests(log: Path, mark: int) -> dict[str, int]:
    """S3 requests moto logged since byte ``mark`` of its log, by method (LIST: a GET of the bucket)."""
    counts: dict[str, int] = {}
    with open(log, "rb") as f:
        f.seek(mark)
        text = f.read().decode(errors="replace")
    for method, path in REQUEST_LINE.findall(text):
        if method == "GET" and path.split("?")[0].strip("/") == BUCKET:
            method = "LIST"
        counts[method] = counts.get(method, 0) + 1
    return counts


# -- the report -------------------------------------------------------------------------------------------


def summarize(runs: list[dict]) -> list[dict]:
    """Median and spread per (storage, writers), the wall-time ratio to 1 writer taken round by round."""
    out = []
    keys = sorted({(r["storage"], r["writers"]) for r in runs}, key=lambda k: (k[0] != "local", k[0], k[1]))
    for storage, writers in keys:
        rs = [r for r in runs if r["storage"] == storage and r["writers"] == writers]
        walls = [r["wall_s"] for r in rs]
        one = {r["round"]: r["wall_s"] for r in runs if r["storage"] == storage and r["writers"] == 1}
        ratios = [r["wall_s"] / one[r["round"]] for r in rs if r["round"] in one]
        median = statistics.median(walls)
        req = [r["requests"] for r in rs if r["requests"]]
        parts = rs[0]["partitions"]
        out.append(
            {
                "storage": storage,
                "writers": writers,
                "rounds": len(rs),
                "threads_per_writer": rs[0]["threads_per_writer"],
                "wall_s": median,
                "spread": (max(walls) - min(walls)) / median if median else 0.0,
                "rows_per_s": statistics.median(r["rows_per_s"] for r in rs),
                "ratio_to_1_writer": statistics.median(ratios) if ratios else None,
                "partition_s": statistics.median(r["partition_s_median"] for r in rs),
                "predictions_commit_s": statistics.median(r["predictions_commit_s_median"] for r in rs),
                "dead_letters_commit_s": statistics.median(r["dead_letters_commit_s_median"] for r in rs),
                "conflicts": sum(r["conflicts"] for r in rs),
                "commit_retries": sum(r["commit_retries"] for r in rs),
                "commits": sum(r["commits"] for r in rs),
                "requests_per_partition": (
                    {
                        m: statistics.median(q.get(m, 0) for q in req) / parts
                        for m in sorted({m for q in req for m in q})
                    }
                    if req
                    else None
                ),
                "verified": all(r["verified"] for r in rs),
                "problems": [p for r in rs for p in r["problems"]],
            }
        )
    return out


def print_report(summary: list[dict], args: argparse.Namespace) -> None:
    cpus = len(os.sched_getaffinity(0))
    print(
        f"\nbackfill of {args.partitions} partitions x {args.rows:,} rows (15 features, MLP 15->64->32->1), "
        f"{cpus} CPUs; {args.rounds} interleaved rounds (median; spread = (max - min) / median of wall time)\n"
    )
    print(
        "| storage | writers | threads each | wall s | spread | rows/s | wall vs 1 writer | s per partition "
        "| commit s (preds / dead) | CommitConflict | commit retries / commits | S3 requests per partition "
        "| verified |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for s in summary:
        ratio = f"{s['ratio_to_1_writer']:.2f}" if s["ratio_to_1_writer"] is not None else "-"
        req = s["requests_per_partition"]
        req_text = ", ".join(f"{m} {v:.0f}" for m, v in req.items()) if req else "-"
        print(
            f"| {s['storage']} | {s['writers']} | {s['threads_per_writer']} | {s['wall_s']:.2f} | "
            f"{s['spread']:.0%} | {s['rows_per_s']:,.0f} | {ratio} | {s['partition_s']:.3f} | "
            f"{s['predictions_commit_s']:.3f} / {s['dead_letters_commit_s']:.3f} | {s['conflicts']} | "
            f"{s['commit_retries']} / {s['commits']} | {req_text} | "
            f"{'yes' if s['verified'] else 'NO: ' + '; '.join(s['problems'][:3])} |"
        )
    print("\n" + estimate(summary, args))


def estimate(summary: list[dict], args: argparse.Namespace) -> str:
    """A paragraph: the backfill on ``--pods`` pods, from the 1-writer per-partition time measured here."""
    by = {(s["storage"], s["writers"]): s for s in summary}
    storage = "s3" if ("s3", 1) in by else "local"
    one = by.get((storage, 1))
    if one is None:
        return "(no 1-writer measurement: no estimate)"
    pods, parts = args.pods, args.partitions
    t = one["wall_s"] / parts  # per partition, one writer with all the cores measured here
    waves = -(-parts // pods)
    most = max((s for s in summary if s["storage"] == storage), key=lambda s: s["writers"])
    retry_rate = most["commit_retries"] / most["commits"] if most["commits"] else 0.0
    text = (
        f"On {pods} pods ({one['threads_per_writer']} cores each, as one writer here): a partition took "
        f"{t:.2f} s with one writer on {storage} (wall / partitions), so {parts} partitions take about "
        f"{t:.2f} s x {parts} / {pods} = {t * parts / pods:.2f} s of scoring ({waves} partition(s) per pod, "
        f"{t * waves:.2f} s), plus each pod's start and model load, which this leaves out. "
    )
    commits_per_s = 2 * pods / t  # predictions + dead letters, one of each per partition
    text += (
        f"The pods then commit about {commits_per_s:.0f} times per second in all (2 commits per partition, "
        f"{commits_per_s / 2:.0f}/s per table); with {most['writers']} writers here, delta-rs retried "
        f"{retry_rate:.2f} times per commit ({most['commit_retries']} retries over {most['commits']} commits, "
        f"each a failed conditional PUT and a read of the winning commit on S3), and CommitConflict was "
        f"raised {most['conflicts']} times. Retries grow with the commits that land during one writer's "
        f"write, so they grow with the pod count; delta-rs gives up after 15 by default (surfacing as a "
        f"CommitFailedError, which Lake reports as CommitConflict)"
    )
    req = (by.get(("s3", 1)) or {}).get("requests_per_partition")
    if req:
        writes = sum(v for m, v in req.items() if m in ("PUT", "POST", "DELETE"))
        reads = sum(v for m, v in req.items() if m in ("GET", "HEAD", "LIST"))
        rate_w, rate_r = pods * writes / t, pods * reads / t
        bound = min(
            S3_WRITES_PER_S * t / writes if writes else float("inf"),
            S3_READS_PER_S * t / reads if reads else float("inf"),
        )
        text += (
            f". On S3 a partition cost {writes:.0f} writes and {reads:.0f} reads (GET/HEAD/LIST, mostly of the "
            f"Delta logs: every table load lists the log and reads the commits since the last checkpoint, so "
            f"this grows with the history), so {pods} pods issue about {rate_w:.0f} writes/s and "
            f"{rate_r:.0f} reads/s; S3's per-prefix rates ({S3_WRITES_PER_S:,} writes/s, {S3_READS_PER_S:,} "
            f"reads/s) bound this near {bound:.0f} pods at this per-partition time"
        )
    return text + "."


# -- main --------------------------------------------------------------------------------------------------


def start_moto(stack: ExitStack, tmp: Path) -> tuple[str, Path]:
    from tests.servers import moto_s3

    log_dir = tmp / "moto"
    log_dir.mkdir()
    endpoint = stack.enter_context(moto_s3(log_dir))
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket=BUCKET)
    return endpoint, log_dir / "moto.log"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--rows", type=int, default=100_000, help="rows per partition")
    ap.add_argument("--writers", default="1,2,4", help="comma-separated writer counts (1 is always measured)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--storage", help="local, s3 or local,s3 (default: both when moto is installed)")
    ap.add_argument("--s3", action="store_true", help="S3 (moto) only")
    ap.add_argument("--threads-per-writer", type=int, default=0, help="default: cpus // writers, at least 1")
    ap.add_argument("--pods", type=int, default=16, help="pods for the scale-out estimate")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "scaleout.jsonl")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    has_moto = (Path(sys.executable).parent / "moto_server").exists()
    names = (
        ["s3"]
        if args.s3
        else (args.storage.split(",") if args.storage else ["local"] + (["s3"] if has_moto else []))
    )
    if "s3" in names and not has_moto:
        raise SystemExit(
            "moto_server is not installed: run `make install` (moto[server] is a dev dependency)"
        )
    writer_counts = sorted({1, *(int(w) for w in args.writers.split(",") if w.strip())})
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        registry = tmp / "registry"
        prepare_model(registry)
        storages = []
        for name in names:
            if name == "local":
                storages.append({"name": "local", "root": str(tmp / "lake"), "options": {}, "log": None})
            elif name == "s3":
                endpoint, log = start_moto(stack, tmp)
                storages.append(
                    {"name": "s3", "root": f"s3://{BUCKET}/lake", "options": s3_options(endpoint), "log": log}
                )
            else:
                raise SystemExit(f"--storage {name!r}: expected local or s3")
        for s in storages:
            print(
                f"preparing {args.partitions} x {args.rows:,} feature rows on {s['name']} ...",
                file=sys.stderr,
                flush=True,
            )
            prepare_features(s["root"], s["options"], args.partitions, args.rows)
        for round_no in range(1, args.rounds + 1):
            for s in storages:
                for writers in writer_counts:
                    print(
                        f"  round {round_no}: {s['name']}, {writers} writer(s) ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    r = run_config(s, writers, round_no, args, registry)
                    if not r["verified"]:
                        print(f"    NOT VERIFIED: {r['problems']}", file=sys.stderr, flush=True)
                    runs.append(r)
    summary = summarize(runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    args.out.write_text(
        "".join(json.dumps({"kind": "run", "at": at, **r}) + "\n" for r in runs)
        + "".join(json.dumps({"kind": "summary", "at": at, **s}) + "\n" for s in summary)
    )
    print_report(summary, args)
    print(f"\nresults in {args.out}")
    if not all(s["verified"] for s in summary):
        raise SystemExit("verification failed (see the table)")


if __name__ == "__main__":
    main()
