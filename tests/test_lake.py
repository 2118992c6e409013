"""The lake on its own: concurrent writers (separate processes, never forked), time travel, foreign folders.

Writers run as subprocesses: delta-rs's runtime does not survive a fork, and this is how runs, steps and
pods write in production.
"""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import duckdb
import pyarrow as pa
import pytest

from batch_assets.storage.lake import Lake, LakeError, partition_literal
from tests.servers import moto_s3

REPO = Path(__file__).resolve().parent.parent
TABLE = "predictions.t"
SCHEMA = pa.schema(
    [
        pa.field("entity_id", pa.int64(), False),
        pa.field("partition_date", pa.date32(), False),
        pa.field("writer", pa.string(), False),
    ]
)
DAYS = [dt.date(2026, 10, 1) + dt.timedelta(days=i) for i in range(8)]
ROWS = 2_000

WRITER = """
import datetime as dt, json, os, sys, time
import pyarrow as pa
from batch_assets.storage.lake import CommitConflict, Lake
from tests.test_lake import ROWS, SCHEMA, TABLE
root, writer, days, wait_for = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
lake = Lake(root, json.loads(os.environ.get("LAKE_OPTIONS") or "{}"))
def batches(day):
    for start in range(0, ROWS, 500):
        yield pa.record_batch(
            [pa.array(range(start, start + 500), pa.int64()), pa.array([day] * 500, pa.date32()),
             pa.array([writer] * 500)], schema=SCHEMA)
        time.sleep(0.05)  # a slow writer: the others commit meanwhile
print("READY", flush=True)
while wait_for and not __import__("os").path.exists(wait_for):
    time.sleep(0.01)
out = []
for d in days:
    day = dt.date.fromisoformat(d)
    try:
        lake.replace_partition(TABLE, SCHEMA, day, batches(day), {"writer": writer})
        out.append([d, "ok"])
    except CommitConflict as exc:
        out.append([d, "conflict: " + str(exc)])
print("RESULT " + json.dumps(out), flush=True)
"""


def start_writers(
    root: str, plan: dict[str, list[dt.date]], go: Path, options: dict[str, str] | None = None
) -> dict[str, list]:
    procs = {
        w: subprocess.Popen(
            [sys.executable, "-c", WRITER, root, w, json.dumps([d.isoformat() for d in days]), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO), "LAKE_OPTIONS": json.dumps(options or {})},
        )
        for w, days in plan.items()
    }
    for p in procs.values():
        assert p.stdout.readline().strip() == "READY"
    go.touch()  # all start together
    results = {}
    for w, p in procs.items():
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out
        results[w] = json.loads(out.split("RESULT ", 1)[1])
    return results


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    with moto_s3(tmp_path_factory.mktemp("moto")) as url:
        yield url


def test_four_processes_write_different_partitions_at_once_on_s3(s3_endpoint, tmp_path):
    """delta-rs commits with conditional PUTs on S3: no lock service, no lost or doubled commit."""
    options = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIALAKETEST",
        "AWS_SECRET_ACCESS_KEY": "lake-test-secret",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=options["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=options["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket="lake-writers")
    lake = Lake("s3://lake-writers/lake", options)
    lake.ensure(TABLE, SCHEMA)
    plan = {f"w{i}": DAYS[i::4] for i in range(4)}
    results = start_writers(lake.root, plan, tmp_path / "go", options)
    assert all(status == "ok" for out in results.values() for _, status in out), results
    got = rows(lake)
    assert [(r[0], r[1], r[2]) for r in got] == [(d, ROWS, ROWS) for d in DAYS]  # exact, no duplicates
    assert {r[0]: r[3] for r in got} == {d: w for w, days in plan.items() for d in days}
    writes = [w for w in lake.history(TABLE) if w.operation == "WRITE"]
    assert len(writes) == len(DAYS)  # one commit per write


def rows(lake: Lake) -> list[tuple]:
    with duckdb.connect() as con:
        lake.register(con, [TABLE])
        return con.execute(
            "SELECT partition_date, count(*), count(DISTINCT entity_id), string_agg(DISTINCT writer) "
            "FROM predictions.t GROUP BY ALL ORDER BY 1"
        ).fetchall()


@pytest.fixture
def lake(tmp_path) -> Lake:
    lake = Lake(str(tmp_path / "lake"))
    lake.ensure(TABLE, SCHEMA)  # created once; the writers race only on partitions
    return lake


def test_four_processes_write_different_partitions_at_once(lake, tmp_path):
    plan = {f"w{i}": DAYS[i::4] for i in range(4)}
    results = start_writers(lake.root, plan, tmp_path / "go")
    assert all(status == "ok" for r in results.values() for _, status in r), results
    got = rows(lake)
    assert [(r[0], r[1], r[2]) for r in got] == [(d, ROWS, ROWS) for d in DAYS]  # exact, no duplicates
    owner = {d: w for w, days in plan.items() for d in days}
    assert {r[0]: r[3] for r in got} == owner  # each partition holds its own writer's rows only
    writes = [w for w in lake.history(TABLE) if w.operation == "WRITE"]
    assert len(writes) == len(DAYS)  # one commit per write
    assert sorted((w.partition, w.metadata["writer"]) for w in writes) == sorted(
        (d.isoformat(), o) for d, o in owner.items()
    )
    assert all(w.rows_added == ROWS for w in writes)


def test_two_writers_of_one_partition_never_leave_a_mix(lake, tmp_path):
    day = DAYS[0]
    results = start_writers(lake.root, {"a": [day], "b": [day]}, tmp_path / "go")
    outcomes = {w: r[0][1] for w, r in results.items()}
    winners = [w for w, o in outcomes.items() if o == "ok"]
    assert winners, outcomes
    for o in outcomes.values():
        if o != "ok":  # the loser says which partition of which table, and that it changed nothing
            assert f"partition {day} of {TABLE}" in o and "changed nothing" in o
    (got,) = rows(lake)
    assert got[1] == got[2] == ROWS and got[3] in winners  # one writer's rows, whole, never both
    if len(winners) == 1:
        assert got[3] == winners[0]


def test_a_partition_rewrite_keeps_the_old_version_readable(lake):
    day = DAYS[0]
    for writer in ("first", "second"):
        data = pa.table(
            {"entity_id": [1, 2], "partition_date": [day, day], "writer": [writer] * 2}, schema=SCHEMA
        )
        lake.replace_partition(TABLE, SCHEMA, day, data, {"writer": writer})
    first, second = [w.version for w in reversed(lake.history(TABLE, day.isoformat()))]
    assert lake.table(TABLE, as_of=first).to_pyarrow_table().column("writer").to_pylist() == ["first"] * 2
    assert set(lake.table(TABLE).to_pyarrow_table().column("writer").to_pylist()) == {"second"}
    with duckdb.connect() as con:
        lake.register(con, [TABLE], as_of=first)
        assert con.execute("SELECT DISTINCT writer FROM predictions.t").fetchall() == [("first",)]
    assert second == first + 1


def test_a_foreign_or_corrupt_folder_at_the_root_is_refused_with_its_path(lake):
    root = Path(lake.root)
    (root / "predictions" / "notes").mkdir(parents=True)
    with pytest.raises(LakeError, match=r"predictions/notes is not a Delta table"):
        lake.tables()
    (root / "predictions" / "notes").rmdir()
    log = root / "predictions" / "t" / "_delta_log"
    for f in log.iterdir():
        f.write_text("{not json")
    with pytest.raises(LakeError, match=str(root / "predictions" / "t")):
        lake.table(TABLE)


@pytest.mark.parametrize("value", ["2026-10-01' OR 1=1 --", 20261001, None])
def test_partition_predicates_take_typed_values_only(value):
    with pytest.raises((TypeError, ValueError)):
        partition_literal(value)
    assert partition_literal(dt.date(2026, 10, 1)) == "2026-10-01"
    assert partition_literal(dt.datetime(2026, 10, 1, 3)) == "2026-10-01 03:00:00"


def test_commit_metadata_is_in_the_log(lake):
    lake.replace_partition(TABLE, SCHEMA, DAYS[0], SCHEMA.empty_table(), {"run_id": "r1", "rows": 0})
    entries = [
        json.loads(line)
        for f in sorted((Path(lake.uri(TABLE)) / "_delta_log").glob("*.json"))
        for line in f.read_text().splitlines()
    ]
    info = [e["commitInfo"] for e in entries if "commitInfo" in e][-1]
    assert info["run_id"] == "r1" and info["partition"] == "2026-10-01"


def test_an_open_table_follows_other_writers_and_writes_from_their_latest_commit(lake):
    """A Lake keeps the tables it opened and reads only the commits since: another writer's commits show
    on the same object, and a write through it starts from the latest commit (nothing of theirs is lost)."""

    def data(day, writer):
        return pa.table(
            {"entity_id": [1, 2], "partition_date": [day, day], "writer": [writer] * 2}, schema=SCHEMA
        )

    other = Lake(lake.root)
    lake.replace_partition(TABLE, SCHEMA, DAYS[0], data(DAYS[0], "mine"))
    held = lake.table(TABLE)
    version = other.replace_partition(TABLE, SCHEMA, DAYS[1], data(DAYS[1], "theirs"))
    assert lake.table(TABLE) is held and held.version() == version
    assert lake.replace_partition(TABLE, SCHEMA, DAYS[2], data(DAYS[2], "mine")) == version + 1
    assert [(r[0], r[1], r[3]) for r in rows(other)] == [
        (DAYS[0], 2, "mine"),
        (DAYS[1], 2, "theirs"),
        (DAYS[2], 2, "mine"),
    ]
    # a fixed version is its own object: the shared one is never moved back
    assert lake.table(TABLE, as_of=version).version() == version and held.version() == version + 1
