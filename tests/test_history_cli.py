"""`batch-assets history | query | vacuum` in process, over real Delta tables written by the warehouse code.

The lake is built directly (no Dagster run): two days of features, both scored by model version 1, then
2026-10-12 re-scored by version 2, exactly as the predictions asset writes them (a predictions commit, then
the dead-letters commit that closes it).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from batch_assets.cli import main
from batch_assets.settings import Settings
from batch_assets.storage import warehouse as wh
from batch_assets.storage.lake import Lake
from tests.conftest import make_model

DAY, OTHER = dt.date(2026, 10, 12), dt.date(2026, 10, 11)
RUN_V1 = "11111111-1111-4111-8111-111111111111"
RUN_V2 = "22222222-2222-4222-8222-222222222222"
RUN_OTHER = "33333333-3333-4333-8333-333333333333"
SHA = {"1": "a1" * 32, "2": "b2" * 32}
ROWS = 40  # per day, plus one duplicated key: 41 read, 39 scored, 2 dead letters


def write_features(lake: Lake, day: dt.date) -> None:
    rng = np.random.default_rng(day.toordinal())
    ids = np.append(np.arange(ROWS), 5)  # key 5 twice: both copies are dead-lettered
    cols = {"entity_id": pa.array(ids, pa.int64()), "partition_date": pa.array([day] * len(ids), pa.date32())}
    for c in wh.FEATURE_COLUMNS:
        cols[c] = pa.array(rng.normal(5, 2, len(ids)))
    lake.replace_partition(wh.FEATURES_TABLE, wh.FEATURES_SCHEMA, day, pa.table(cols))


def score(con: duckdb.DuckDBPyConnection, lake: Lake, day: dt.date, version: str, run_id: str):
    time.sleep(0.005)  # commit times are recorded to the millisecond: keep writes apart
    return wh.replace_predictions_partition(
        con,
        lake,
        day=day,
        module=make_model(seed=int(version)),
        features_table=wh.FEATURES_TABLE,
        key="entity_id",
        feature_columns=wh.FEATURE_COLUMNS,
        output_table=wh.PREDICTIONS_TABLE,
        model_name="risk_model",
        model_version=version,
        model_sha256=SHA[version],
        run_id=run_id,
        scored_at=dt.datetime(2026, 10, 13, 1, 30),
    )


@pytest.fixture
def lake(settings: Settings) -> Lake:
    lake = Lake(settings.lake_location)
    write_features(lake, OTHER)
    write_features(lake, DAY)
    with duckdb.connect() as con:
        wh.connect_lake(con, lake)
        score(con, lake, OTHER, "1", RUN_OTHER)
        score(con, lake, DAY, "1", RUN_V1)
        stats = score(con, lake, DAY, "2", RUN_V2)  # the re-score
    assert (stats.rows_read, stats.rows_scored, stats.dead_letters) == (ROWS + 1, ROWS - 1, 2)
    return lake


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def data_lines(out: str) -> list[str]:
    """The table rows of a history listing (between the rule under the header and the legend)."""
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("---")) + 1
    return [ln for ln in lines[start:] if ln[:4].isdigit()]


def history_json(capsys, *argv: str) -> list[dict]:
    code, out, _ = run(capsys, "history", *argv, "--json")
    assert code == 0
    return json.loads(out)


# -- history -------------------------------------------------------------------------------------------


def test_history_of_a_dataset_partition_is_one_line_per_write_newest_first(lake, capsys):
    code, out, _ = run(capsys, "history", "risk_scores", "2026-10-12")
    assert code == 0
    assert "predictions.risk_scores + predictions.dead_letters" in out and "partition 2026-10-12" in out
    v2, v1 = data_lines(out)
    for line, version, run_id in [(v2, "2", RUN_V2), (v1, "1", RUN_V1)]:
        assert f"risk_model/{version} ({SHA[version][:12]})" in line
        assert run_id[:8] in line and run_id not in line  # the short id; --json has the full one
        assert " 39 " in line and " 2 " in line  # rows written, dead letters
        assert "INCOMPLETE" not in line

    newest, oldest = history_json(capsys, "risk_scores", "2026-10-12")
    assert [newest["run_id"], oldest["run_id"]] == [RUN_V2, RUN_V1]
    assert newest["model_version"] == "2" and newest["model_sha256"] == SHA["2"]
    assert (newest["rows_written"], newest["dead_letters"], newest["rows_read"]) == (39, 2, 41)
    assert (
        len(newest["input_sha256"]) == 64 and newest["input_sha256"] == oldest["input_sha256"]
    )  # same input
    assert newest["complete"] and oldest["complete"]
    for entry in (newest, oldest):
        pred, dead = entry["commits"]["predictions"], entry["commits"]["dead_letters"]
        assert pred["table"] == "predictions.risk_scores" and dead["table"] == "predictions.dead_letters"
        assert pred["time"] <= dead["time"] == entry["time"]  # the write ends with its dead-letters commit
        assert (pred["rows_added"], dead["rows_added"]) == (39, 2)
    assert newest["commits"]["predictions"]["version"] > oldest["commits"]["predictions"]["version"]
    # the same versions as in the text listing: "predictions/dead letters"
    assert (
        f"{newest['commits']['predictions']['version']}/{newest['commits']['dead_letters']['version']}" in v2
    )


def test_history_of_every_partition_and_of_one_table(lake, capsys):
    writes = history_json(capsys, "risk_scores")
    assert [(w["partition"], w["run_id"]) for w in writes] == [
        ("2026-10-12", RUN_V2),
        ("2026-10-12", RUN_V1),
        ("2026-10-11", RUN_OTHER),
    ]
    assert [w["time"] for w in writes] == sorted((w["time"] for w in writes), reverse=True)

    code, out, _ = run(capsys, "history", "predictions.risk_scores", "2026-10-12")
    assert code == 0 and "history of predictions.risk_scores, partition 2026-10-12" in out
    assert len(data_lines(out)) == 2 and "risk_model/2" in data_lines(out)[0]
    # the dead-letters table's commits carry the counts and the input checksum
    (dead,) = [
        w for w in history_json(capsys, "predictions.dead_letters", "2026-10-12") if w["run_id"] == RUN_V2
    ]
    assert dead["dead_letters"] == 2 and dead["rows_scored"] == 39 and len(dead["input_sha256"]) == 64
    assert dead["metadata"]["closes"] == "predictions.risk_scores"
    # the features table records no model: shown as "-"
    code, out, _ = run(capsys, "history", "features.customer_daily")
    assert code == 0 and len(data_lines(out)) == 2 and all(" - " in ln for ln in data_lines(out))


def test_a_predictions_commit_without_its_dead_letters_commit_is_shown_incomplete(lake, capsys):
    """A crash between the two commits leaves a predictions commit no dead-letters commit closed."""
    rows = lake.table(wh.PREDICTIONS_TABLE).to_pyarrow_table(filters=[("partition_date", "=", DAY)])
    rows = rows.set_column(rows.schema.get_field_index("run_id"), "run_id", pa.array(["crashed"] * len(rows)))
    time.sleep(0.005)
    lake.replace_partition(
        wh.PREDICTIONS_TABLE, wh.predictions_schema(), DAY, rows, {"run_id": "crashed", "model_version": "2"}
    )
    code, out, _ = run(capsys, "history", "risk_scores", "2026-10-12")
    assert code == 0
    first, *rest = data_lines(out)
    assert "INCOMPLETE: no dead-letters commit" in first and "crashed" in first
    assert len(rest) == 2 and not any("INCOMPLETE" in ln for ln in rest)
    newest = history_json(capsys, "risk_scores", "2026-10-12")[0]
    assert (
        not newest["complete"]
        and newest["commits"]["dead_letters"] is None
        and newest["dead_letters"] is None
    )


def test_an_unwritten_partition_is_an_empty_history(lake, capsys):
    code, out, _ = run(capsys, "history", "risk_scores", "2026-10-01")
    assert code == 0 and "no writes" in out
    assert history_json(capsys, "risk_scores", "2026-10-01") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["history", "nope"], "no scored dataset 'nope'"),
        (["history", "predictions.nothing"], "predictions.nothing was never written"),
        (["history", "risk_scores", "2026-13-45"], "invalid daily partition key '2026-13-45'"),
        (["history", "predictions.risk_scores", "yesterday"], "invalid partition 'yesterday'"),
        (["history", "a.b.c"], "invalid table name 'a.b.c'"),
        (["history", "x.y;drop"], "invalid SQL identifier"),
    ],
)
def test_history_errors_are_one_line_and_exit_2(lake, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err


def test_history_of_a_dataset_never_scored_is_an_error(settings, capsys):
    code, _, err = run(capsys, "history", "risk_scores")
    assert code == 2 and err.count("\n") == 1
    assert "dataset risk_scores was never written: no Delta table at" in err and "Traceback" not in err


# -- query ---------------------------------------------------------------------------------------------

PUBLISHED = (
    "SELECT model_version, run_id, count(*) AS n FROM predictions.risk_scores "
    "WHERE partition_date = DATE '2026-10-12' GROUP BY ALL"
)


def published(capsys, *flags: str) -> list[dict]:
    code, out, err = run(capsys, "query", PUBLISHED, "--format", "json", *flags)
    assert code == 0, err
    return json.loads(out)


def test_query_reads_the_latest_version_by_default(lake, capsys):
    assert published(capsys) == [{"model_version": "2", "run_id": RUN_V2, "n": 39}]
    code, out, _ = run(
        capsys, "query", "SELECT count(*) AS n, min(partition_date) AS first FROM predictions.risk_scores"
    )
    assert code == 0
    assert out.splitlines()[0].split() == ["n", "first"] and out.splitlines()[2].split() == [
        "78",
        "2026-10-11",
    ]
    assert out.rstrip().endswith("(1 row)")
    code, out, _ = run(capsys, "query", PUBLISHED, "--format", "csv")
    assert code == 0 and out == f"model_version,run_id,n\n2,{RUN_V2},39\n"


def test_what_we_published_before_the_rescore_by_version_and_by_time(lake, capsys):
    """ "What did we publish for 2026-10-12 before the re-score?": the history names the write, the query
    reads the lake as that write left it."""
    before = history_json(capsys, "risk_scores", "2026-10-12")[1]
    assert before["model_version"] == "1"
    version = before["commits"]["predictions"]["version"]
    v1 = [{"model_version": "1", "run_id": RUN_V1, "n": 39}]

    # an integer version: of the one lake table the SQL reads, or of the tables named by --table
    assert published(capsys, "--as-of", str(version)) == v1
    assert published(capsys, "--as-of", str(version), "--table", "predictions.risk_scores") == v1
    # a timestamp: the time history printed for the write (its last commit), with or without a zone
    assert published(capsys, "--as-of", before["time"]) == v1
    assert published(capsys, "--as-of", before["time"].removesuffix("Z")) == v1
    code, _, err = run(capsys, "query", PUBLISHED, "--as-of", before["time"])
    assert (
        f"predictions.risk_scores: version {version} (the latest committed at or before {before['time']})"
        in err
    )
    # ...and the moment before the first write of that day: only 2026-10-11 was published then
    first_write = history_json(capsys, "risk_scores", "2026-10-11")[0]["time"]
    assert published(capsys, "--as-of", first_write) == []
    # the latest is unchanged
    assert published(capsys) == [{"model_version": "2", "run_id": RUN_V2, "n": 39}]


def test_a_timestamp_applies_to_every_table_the_sql_reads(lake, capsys):
    before = history_json(capsys, "risk_scores", "2026-10-12")[1]
    sql = (
        "SELECT p.run_id AS scored_by, d.run_id AS dead_by, count(DISTINCT d.entity_id) AS dead "
        "FROM predictions.risk_scores p, predictions.dead_letters d "
        "WHERE p.partition_date = DATE '2026-10-12' AND d.partition_date = p.partition_date GROUP BY ALL"
    )
    code, out, err = run(capsys, "query", sql, "--as-of", before["time"], "--format", "json")
    assert code == 0, err
    assert json.loads(out) == [{"scored_by": RUN_V1, "dead_by": RUN_V1, "dead": 1}]
    assert "predictions.risk_scores: version" in err and "predictions.dead_letters: version" in err
    # --table narrows it: the dead letters as they are now, the predictions as they were
    code, out, _ = run(
        capsys,
        "query",
        sql,
        "--as-of",
        before["time"],
        "--table",
        "predictions.risk_scores",
        "--format",
        "json",
    )
    assert code == 0 and json.loads(out) == [{"scored_by": RUN_V1, "dead_by": RUN_V2, "dead": 1}]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--as-of", "999"], "predictions.risk_scores has no version 999: its log holds versions 0.."),
        (
            ["--as-of", "2020-01-01"],
            "has no version as of 2020-01-01T00:00:00.000Z: its first commit, version 0",
        ),
        (["--table", "predictions.risk_scores"], "--table names the tables --as-of applies to"),
        (
            ["--as-of", "1", "--table", "predictions.risk_summary"],
            "predictions.risk_summary was never written",
        ),
    ],
)
def test_query_as_of_errors_are_one_line_and_exit_2(lake, capsys, flags, message):
    code, out, err = run(capsys, "query", PUBLISHED, *flags)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_a_version_of_several_tables_needs_table(lake, capsys):
    sql = "SELECT count(*) FROM predictions.risk_scores JOIN predictions.dead_letters USING (partition_date)"
    code, _, err = run(capsys, "query", sql, "--as-of", "1")
    assert code == 2 and err.count("\n") == 1
    assert "reads 2 (predictions.dead_letters, predictions.risk_scores): name the table(s)" in err
    code, _, err = run(capsys, "query", "SELECT 42", "--as-of", "1")
    assert code == 2 and "the SQL reads no lake table" in err


def test_query_sql_errors_and_bad_flags(lake, capsys):
    code, out, err = run(capsys, "query", "SELEC 1")
    assert code == 2 and out == "" and err.count("\n") == 1 and "syntax error" in err
    code, _, err = run(capsys, "query", "SELECT nope FROM predictions.risk_scores")
    assert code == 2 and err.count("\n") == 1 and "nope" in err
    for flags in (["--as-of", "yesterday"], ["--table", "x;drop"], ["--format", "xml"]):
        with pytest.raises(SystemExit) as exc:
            main(["query", "SELECT 1", *flags])
        assert exc.value.code == 2
    assert "is neither a table version" in capsys.readouterr().err


def test_query_sees_the_lake_read_only(lake, capsys):
    """The SQL runs on an in-memory DuckDB: tables are views over the Delta tables, which it cannot change."""
    code, _, err = run(capsys, "query", "DELETE FROM predictions.risk_scores")
    assert code == 2 and err.count("\n") == 1
    assert published(capsys) == [{"model_version": "2", "run_id": RUN_V2, "n": 39}]


# -- vacuum --------------------------------------------------------------------------------------------


def data_files(settings: Settings) -> set[Path]:
    return {p for p in Path(settings.lake_location).rglob("*.parquet") if "_delta_log" not in p.parts}


def test_vacuum_is_a_dry_run_until_apply(lake, settings, capsys):
    files = data_files(settings)
    code, out, _ = run(capsys, "vacuum")  # the default retention (168 h) keeps the re-scored version
    assert (
        code == 0 and "older than 168 h (dry run, nothing deleted)" in out and "would delete 0 files" in out
    )

    code, out, _ = run(capsys, "vacuum", "--retention-hours", "0")
    assert code == 0 and "dry run, nothing deleted" in out
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in out.splitlines() if ln.startswith("  ")}
    assert counts == {
        "features.customer_daily": 0,
        "predictions.dead_letters": 1,  # the version 1 dead letters of 2026-10-12
        "predictions.risk_scores": 1,  # the version 1 scores of 2026-10-12
    }
    assert "would delete 2 files in 2 tables; run with --apply" in out
    assert data_files(settings) == files
    before = history_json(capsys, "risk_scores", "2026-10-12")[1]
    assert published(capsys, "--as-of", before["time"])[0]["model_version"] == "1"  # still readable

    code, out, _ = run(capsys, "vacuum", "--retention-hours", "0", "--apply")
    assert (
        code == 0
        and "1 file deleted" in out
        and out.splitlines()[-1].startswith("deleted 2 files in 2 tables")
    )
    assert len(files - data_files(settings)) == 2 and not data_files(settings) - files
    # the latest version reads as before; the vacuumed one says why it cannot
    assert published(capsys) == [{"model_version": "2", "run_id": RUN_V2, "n": 39}]
    code, out, err = run(capsys, "query", PUBLISHED, "--as-of", before["time"])
    resolved, error = err.splitlines()  # which version --as-of read, then the one-line error
    assert code == 2 and out == "" and resolved.startswith("predictions.risk_scores: version")
    version = before["commits"]["predictions"]["version"]
    assert error.startswith(f"error: predictions.risk_scores version {version} can no longer be read: ")
    assert "`batch-assets vacuum` deleted its data files" in error
    # nothing left to delete
    code, out, _ = run(capsys, "vacuum", "--retention-hours", "0")
    assert "would delete 0 files" in out


def test_vacuum_default_retention_comes_from_settings(lake, capsys, monkeypatch):
    monkeypatch.setenv("BATCH_ASSETS_LAKE_RETENTION_HOURS", "0")
    code, out, _ = run(capsys, "vacuum")
    assert code == 0 and "older than 0 h" in out and "would delete 2 files" in out
    with pytest.raises(SystemExit):
        main(["vacuum", "--retention-hours", "-1"])


def test_vacuum_of_an_empty_lake(settings, capsys):
    code, out, _ = run(capsys, "vacuum")
    assert code == 0 and out.startswith("no tables under ")


def test_where_prints_the_lake(settings, capsys):
    code, out, _ = run(capsys, "where")
    assert code == 0 and f"lake (Delta):    {settings.lake_location}" in out and "warehouse" not in out
