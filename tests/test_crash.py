"""Crash safety of the Delta lake: SIGKILL the scoring process at random points of a partition write
(while it scores, while it writes Parquet files, while it commits), on local disk and on an S3 API.

A partition write is two Delta commits: the predictions, then the dead letters. After every kill:

- every reader (the Delta table at its latest version, DuckDB over it, and every older version by time
  travel) sees each table's partition wholly old or wholly new: one run's rows, exactly that run's count,
  no duplicates;
- when the kill fell between the two commits (predictions new, dead letters old), the blocking completeness
  check fails naming both runs; otherwise it passes.

After a re-run the check passes and every feature row is scored exactly once or dead-lettered.
Writers are spawned as fresh interpreters (``subprocess``): delta-rs cannot write from a forked process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import duckdb
import numpy as np
import pyarrow as pa
import pytest

from batch_assets.core import partition_checks
from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import (
    DEAD_LETTERS_TABLE,
    FEATURE_COLUMNS,
    FEATURES_SCHEMA,
    FEATURES_TABLE,
    PREDICTIONS_TABLE,
    connect_lake,
    dead_letters_schema,
    predictions_schema,
)
from tests.servers import moto_s3

REPO = Path(__file__).resolve().parent.parent
DAY = dt.date(2026, 9, 1)
BAD = 37  # feature rows with a NaN: dead letters, so a mix of two runs' halves is visible
KILLS = 10
BATCHES = 50  # record batches per write, so a kill can fall between any two of them

# The scoring process. It reports each batch it scored ("BATCH <i>"), the end of scoring ("SCORED") and
# each commit it made ("COMMITTED <table>"), so the test can aim kills at any point of the write however
# loaded the machine is; the lake itself is what the assertions read. Given a table after its run id it
# stops after committing that table, so a kill between the two commits is certain to be tried.
CHILD = """
import datetime as dt, json, os, sys, time
import duckdb, torch
from batch_assets.core.model_format import TabularMLP
from batch_assets.storage.warehouse import FEATURE_COLUMNS, connect_lake, replace_predictions_partition
from batch_assets.storage.lake import Lake
root, rows, BATCHES = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lake = Lake(root, json.loads(os.environ.get("CRASH_LAKE_OPTIONS") or "{}"))
import batch_assets.storage.warehouse as wh
torch.manual_seed(0)
model = TabularMLP(len(FEATURE_COLUMNS), (16, 8)).eval()
print("READY", flush=True)
run, pause_after = sys.stdin.readline().split()
score_batches = wh.score_batches
def traced_batches(*args, **kwargs):
    for i, part in enumerate(score_batches(*args, **kwargs)):
        print("BATCH", i, flush=True)
        yield part
    print("SCORED", flush=True)  # the last batch is handed to delta-rs: it now writes and commits
wh.score_batches = traced_batches
replace = Lake.replace_partition
def traced(self, table, *args, **kwargs):
    version = replace(self, table, *args, **kwargs)
    print("COMMITTED", table, version, flush=True)
    if table == pause_after:
        time.sleep(600)
    return version
Lake.replace_partition = traced
con = duckdb.connect()
connect_lake(con, lake)
print("START", flush=True)
t = time.perf_counter()
replace_predictions_partition(
    con, lake, day=dt.date(2026, 9, 1), module=model, features_table="features.customer_daily",
    key="entity_id", feature_columns=FEATURE_COLUMNS, output_table="predictions.risk_scores",
    model_name="risk_model", model_version=run, run_id=run, scored_at=dt.datetime(2026, 9, 2),
    batch_rows=rows // BATCHES)
print("DONE", time.perf_counter() - t, flush=True)
"""


class Scorer:
    """Starts scoring processes against one lake. A process imports and loads its model before it is
    given a run, so the next one can warm up while the test inspects the lake after a kill."""

    def __init__(self, lake: Lake, rows: int, spool: Path):
        self.lake, self.rows, self.spool = lake, rows, spool
        self._warm: subprocess.Popen | None = None

    def _spawn(self) -> subprocess.Popen:
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "CRASH_LAKE_OPTIONS": json.dumps(dict(self.lake.storage_options)),
            "TMPDIR": str(self.spool),  # a killed writer's dead-letter spool stays in the test's folder
        }
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, self.lake.root, str(self.rows), str(BATCHES)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )

    def prewarm(self) -> None:
        if self._warm is None:
            self._warm = self._spawn()

    def start(self, run: str, pause_after: str = "-") -> subprocess.Popen:
        proc, self._warm = self._warm or self._spawn(), None
        assert proc.stdout.readline().strip() == "READY"
        proc.stdin.write(f"{run} {pause_after}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "START"
        return proc

    def run(self, run: str) -> float:
        """Write the partition as ``run``; returns the seconds from the end of scoring to the last commit."""
        proc = self.start(run)
        until(proc, "SCORED")
        t = time.perf_counter()
        until(proc, f"COMMITTED {DEAD_LETTERS_TABLE}")
        window = time.perf_counter() - t
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "DONE" in out, out
        return window

    def close(self) -> None:
        if self._warm is not None:
            self._warm.kill()
            self._warm.communicate()


def until(proc: subprocess.Popen, marker: str) -> str:
    """Read the writer's output up to the line starting with ``marker``."""
    for line in proc.stdout:
        if line.startswith(marker):
            return line
    raise AssertionError(f"the writer exited (rc {proc.wait()}) before printing {marker!r}")


def features(rows: int) -> pa.Table:
    rng = np.random.default_rng(3)
    cols = {c: rng.uniform(0, 10, rows) for c in FEATURE_COLUMNS}
    bad = rng.choice(rows, BAD, replace=False)
    cols["amount_mean_30d"][bad] = np.nan
    return pa.table(
        {
            "entity_id": pa.array(rng.permutation(rows) + 1_000, pa.int64()),
            "partition_date": pa.array([DAY] * rows, pa.date32()),
            **cols,
        }
    )


def seed(lake: Lake, rows: int) -> None:
    """The features partition, and the output tables created empty (their creation is not under test)."""
    lake.replace_partition(FEATURES_TABLE, FEATURES_SCHEMA, DAY, features(rows))
    lake.ensure(PREDICTIONS_TABLE, predictions_schema())
    lake.ensure(DEAD_LETTERS_TABLE, dead_letters_schema())


def halves(table: pa.Table) -> dict[str, int]:
    """``{run_id: rows}`` of one partition's rows."""
    runs = table.column("run_id").to_pylist()
    return {r: runs.count(r) for r in set(runs)}


class Readers:
    """Reads the partition as every reader can: each Delta version (once: versions never change), the
    latest version, and DuckDB over the registered lake."""

    EXPECTED = (PREDICTIONS_TABLE, DEAD_LETTERS_TABLE)

    def __init__(self, lake: Lake, rows: int):
        self.lake = lake
        self.rows = {PREDICTIONS_TABLE: rows - BAD, DEAD_LETTERS_TABLE: BAD}
        self.checked = dict.fromkeys(self.rows, -1)
        self.run_at: dict[str, dict[int, str | None]] = {t: {} for t in self.rows}

    def assert_whole(self, where: str) -> tuple[str | None, str | None]:
        """Each half of the partition is wholly one run's, in every version: returns the latest
        (predictions run, dead letters run), None for a half never written."""
        latest: dict[str, str | None] = {}
        for table, n in self.rows.items():
            last = self.lake.table(table).version()
            for version in range(self.checked[table] + 1, last + 1):
                snap = self.lake.table(table, as_of=version).to_pyarrow_table(
                    filters=[("partition_date", "=", DAY)]
                )
                by_run = halves(snap)
                assert len(by_run) <= 1, f"{where}: {table} v{version} mixes runs {by_run}"
                assert not by_run or list(by_run.values()) == [n], f"{where}: {table} v{version}: {by_run}"
                if table == PREDICTIONS_TABLE and snap.num_rows:
                    keys = snap.column("entity_id")
                    assert len(keys.unique()) == len(keys), f"{where}: duplicate keys in v{version}"
                self.run_at[table][version] = next(iter(by_run), None)
            self.checked[table] = last
            latest[table] = self.run_at[table][last]
        with duckdb.connect() as con:
            connect_lake(con, self.lake)
            for table, n in self.rows.items():
                got = con.execute(
                    f"SELECT run_id, count(*) FROM {table} WHERE partition_date = $d GROUP BY ALL",  # noqa: S608
                    {"d": DAY},
                ).fetchall()
                assert got == ([(latest[table], n)] if latest[table] else []), f"{where}: {table}: {got}"
        return latest[PREDICTIONS_TABLE], latest[DEAD_LETTERS_TABLE]


def completeness(lake: Lake) -> partition_checks.CheckOutcome:
    with duckdb.connect() as con:
        connect_lake(con, lake)
        return partition_checks.completeness(
            con,
            day=DAY,
            features_table=FEATURES_TABLE,
            output_table=PREDICTIONS_TABLE,
            dead_letter_table=DEAD_LETTERS_TABLE,
            key="entity_id",
        )


def assert_check_matches(lake: Lake, preds_run: str, dead_run: str, where: str) -> bool:
    """The completeness check passes when both halves are one run's, and fails naming both runs when not;
    returns whether the halves were mixed."""
    outcome = completeness(lake)
    if preds_run == dead_run:
        assert outcome.passed, f"{where}: {outcome.description}"
        return False
    assert not outcome.passed, f"{where}: a mix of {preds_run} and {dead_run} passed"
    assert outcome.metadata["writing_runs"] == 2
    assert preds_run in outcome.description and dead_run in outcome.description, outcome.description
    return True


def kill_points(window: float) -> list[tuple[str, float]]:
    """Where to kill the writers: half after a random scored batch, half at a random moment from the end of
    scoring to a little past the commits (``window``: how long those took in the first write)."""
    rng = random.Random(7)
    return [
        (f"BATCH {rng.randrange(BATCHES)}", rng.uniform(0, 0.005))
        if i % 2
        else ("SCORED", rng.uniform(0, window * 1.3))
        for i in range(KILLS)
    ]


def crash_and_recover(lake: Lake, rows: int, spool: Path) -> dict[str, int]:
    scorer = Scorer(lake, rows, spool)
    readers = Readers(lake, rows)
    try:
        seed(lake, rows)
        window = scorer.run("run-old")
        scorer.prewarm()
        assert readers.assert_whole("first write") == ("run-old", "run-old")
        assert completeness(lake).passed

        # one certain kill between the two commits: the predictions are new, the dead letters old
        proc = scorer.start("run-between", pause_after=PREDICTIONS_TABLE)
        until(proc, f"COMMITTED {PREDICTIONS_TABLE}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        scorer.prewarm()
        assert readers.assert_whole("kill between the commits") == ("run-between", "run-old")
        assert assert_check_matches(lake, "run-between", "run-old", "kill between the commits")

        landed = {"scoring": 0, "writing": 0, "between": 0, "after": 0}
        for attempt, (marker, seconds) in enumerate(kill_points(window)):
            run = f"run-kill{attempt}"
            proc = scorer.start(run)
            until(proc, marker)
            time.sleep(seconds)
            proc.send_signal(signal.SIGKILL)
            out, _ = proc.communicate()
            scorer.prewarm()
            commits = out.count("COMMITTED")
            phase = ["writing" if marker == "SCORED" or "SCORED" in out else "scoring", "between", "after"]
            landed[phase[min(commits, 2)]] += 1
            where = f"kill {attempt}: {seconds * 1000:.1f} ms after {marker!r}, after {commits} commit(s)"
            preds_run, dead_run = readers.assert_whole(where)
            assert_check_matches(lake, preds_run, dead_run, where)
            if commits:  # what the writer said it committed is what readers see
                assert preds_run == run, where
            if commits == 2:
                assert dead_run == run, where
        assert landed["scoring"] >= 1 and landed["scoring"] < KILLS, landed  # in scoring and past it

        scorer.run("run-final")
    finally:
        scorer.close()
    assert readers.assert_whole("re-run") == ("run-final", "run-final")
    outcome = completeness(lake)
    assert outcome.passed, outcome.description
    assert outcome.metadata["scored"] == rows - BAD and outcome.metadata["dead_lettered"] == BAD
    with duckdb.connect() as con:
        connect_lake(con, lake)
        once = con.execute(
            """SELECT count(*), count(DISTINCT k) FROM (
                SELECT entity_id AS k FROM predictions.risk_scores WHERE partition_date = $d
                UNION ALL SELECT entity_id FROM predictions.dead_letters WHERE partition_date = $d)
            WHERE k IN (SELECT entity_id FROM features.customer_daily WHERE partition_date = $d)""",
            {"d": DAY},
        ).fetchall()[0]
    assert once == (rows, rows)  # every feature row exactly once: scored or dead-lettered
    # the log names the run of the partition's last commit of each table
    for table in (PREDICTIONS_TABLE, DEAD_LETTERS_TABLE):
        assert lake.history(table, partition=DAY.isoformat())[0].metadata["run_id"] == "run-final"
    return landed


def test_sigkill_mid_write_never_leaves_a_partial_or_mixed_partition(tmp_path):
    landed = crash_and_recover(Lake(str(tmp_path / "lake")), 60_000, tmp_path)
    print("kills landed:", landed)


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.mark.slow
def test_sigkill_mid_write_on_s3_never_leaves_a_partial_or_mixed_partition(s3_endpoint, tmp_path):
    options = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIACRASHTEST",
        "AWS_SECRET_ACCESS_KEY": "crash-test-secret",
    }
    bucket = f"crash-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=options["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=options["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)
    landed = crash_and_recover(Lake(f"s3://{bucket}/lake", options), 50_000, tmp_path)
    print("kills landed:", landed)
