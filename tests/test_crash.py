"""Crash safety: SIGKILL the scoring process at random points of a partition write, then look and re-run.

After every kill the partition holds exactly the old rows or exactly the new rows, never a mix or a part;
after a re-run it holds every feature row scored once.
"""

import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from batch_assets.scoring.warehouse import FEATURE_COLUMNS, ensure_schema

REPO = Path(__file__).resolve().parent.parent
ROWS = 150_000
DAY = dt.date(2026, 9, 1)

CHILD = """
import datetime as dt, sys, time
import duckdb
from batch_assets.scoring.warehouse import FEATURE_COLUMNS, replace_predictions_partition
from tests.conftest import make_model
db, version = sys.argv[1], sys.argv[2]
con = duckdb.connect(db)
model = make_model()
print("START", flush=True)
t = time.perf_counter()
replace_predictions_partition(
    con, day=dt.date(2026, 9, 1), module=model, features_table="features.customer_daily", key="entity_id",
    feature_columns=FEATURE_COLUMNS, output_table="predictions.risk_scores", model_name="risk_model",
    model_version=version, run_id="run-" + version, scored_at=dt.datetime(2026, 9, 2), batch_rows=4096)
print("DONE", time.perf_counter() - t, flush=True)
"""


def child(db: Path, version: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db), version],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def partition_state(db: Path) -> list[tuple]:
    with duckdb.connect(str(db)) as con:
        return con.execute(
            """SELECT model_version, count(*), count(DISTINCT entity_id)
            FROM predictions.risk_scores WHERE partition_date = ? GROUP BY ALL""",
            [DAY],
        ).fetchall()


@pytest.mark.slow
def test_sigkill_mid_write_never_leaves_a_partial_partition(tmp_path):
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        ensure_schema(con)
        gen = ", ".join(f"random() * 10 AS {c}" for c in FEATURE_COLUMNS)
        con.execute(f"INSERT INTO features.customer_daily SELECT range, ?, {gen} FROM range(?)", [DAY, ROWS])
    first = child(db, "old")
    out, _ = first.communicate(timeout=300)
    duration = float(out.split("DONE")[1])
    assert partition_state(db) == [("old", ROWS, ROWS)]

    rng = random.Random(7)
    outcomes = []
    for attempt in range(10):
        proc = child(db, f"new{attempt}")
        assert proc.stdout.readline().strip() == "START"
        time.sleep(rng.uniform(0, duration * 1.1))  # anywhere from before the first batch to the commit
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = partition_state(db)
        assert len(state) == 1, f"kill {attempt}: mixed versions {state}"
        version, rows, distinct = state[0]
        assert rows == distinct == ROWS, f"kill {attempt}: partial partition {state}"
        outcomes.append(version)
    assert outcomes.count("old") >= 1  # at least one kill landed before the commit

    final = child(db, "final")
    final.communicate(timeout=300)
    assert final.returncode == 0
    assert partition_state(db) == [("final", ROWS, ROWS)]
