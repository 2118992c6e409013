"""The whole chain materialized on a tmp_path DuckDB file and a real (temporary) Dagster instance."""

import dagster as dg
import numpy as np
import pytest
import torch

from batch_assets.core.model_format import load_artifact
from batch_assets.datasets import demo_spec
from batch_assets.definitions import build_definitions
from batch_assets.predictions import MODEL_SHA_TAG, MODEL_VERSION_TAG, build_scored_asset
from resources import build_resources
from tests.conftest import drop_lake_column, lake_connection, make_model, write_artifact

risk_scores = build_scored_asset(demo_spec())

LAST = "2026-09-14"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture
def landing(ingested):
    """The small demo's landing files, already ingested (raw + features, every day) by real runs."""
    return ingested.settings


@pytest.fixture
def instance(ingested):
    """The instance that recorded those ingest runs."""
    return ingested.instance


@pytest.fixture
def defs(landing, registered_model):
    return build_definitions(landing)


def run(defs, instance, job, key, tags=None):
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=key, tags=tags, run_config=QUIET, raise_on_error=False
    )


def failure_message(result) -> str:
    failure = next(e for e in result.all_events if e.is_step_failure)
    return failure.step_failure_data.error.message


@pytest.fixture
def scored(defs, instance):
    """raw + features for every day of the small demo (``landing``), then predictions + summary for the
    last day."""
    result = run(defs, instance, "score_daily", LAST)
    assert result.success
    return result


def query(settings, sql, params=()):
    with lake_connection(settings) as con:
        return con.execute(sql, list(params)).fetchall()


def predictions(settings, day=LAST):
    return query(
        settings,
        "SELECT entity_id, score, model_name, model_version, run_id FROM predictions.risk_scores "
        "WHERE partition_date = ? ORDER BY entity_id",
        [day],
    )


def test_every_feature_row_is_scored_once_with_provenance(scored, landing, instance):
    n_features = query(
        landing, "SELECT count(*) FROM features.customer_daily WHERE partition_date = ?", [LAST]
    )[0][0]
    rows = predictions(landing)
    assert n_features > 300 and len(rows) == n_features
    assert len({r[0] for r in rows}) == len(rows)
    assert {(r[2], r[3], r[4]) for r in rows} == {("risk_model", "1", scored.run_id)}
    assert all(0.0 <= r[1] <= 1.0 for r in rows)
    summary = query(
        landing,
        "SELECT rows, model_version, dead_letters FROM predictions.risk_summary WHERE partition_date = ?",
        [LAST],
    )
    assert summary == [(n_features, "1", 0)]


def test_materialization_records_metadata(scored, registered_model, instance):
    event = instance.get_latest_materialization_event(dg.AssetKey(["predictions", "risk_scores"]))
    mat = event.asset_materialization
    assert mat.partition == LAST
    md = {k: v.value for k, v in mat.metadata.items()}
    info = registered_model.get("risk_model", "1")
    assert (
        md["model_version"] == "1" and md["model_sha256"] == info.sha256 and md["model_name"] == "risk_model"
    )
    assert md["dagster/row_count"] == md["rows_read"] > 0 and md["dead_letters"] == 0
    assert len(md["input_sha256"]) == 64 and md["rows_per_s"] > 0 and md["duration_s"] > 0
    assert md["peak_rss_mb"] > 0
    raw = instance.get_latest_materialization_event(
        dg.AssetKey(["raw", "transactions"])
    ).asset_materialization
    assert raw.metadata["dagster/row_count"].value > 0


def test_rematerializing_gives_identical_rows_and_no_duplicates(scored, defs, instance, landing):
    before = predictions(landing)
    again = run(defs, instance, "score_daily", LAST)
    assert again.success
    after = predictions(landing)
    assert [(r[0], r[1]) for r in after] == [(r[0], r[1]) for r in before]
    assert {r[4] for r in after} == {again.run_id}
    raw_before = query(landing, "SELECT count(*) FROM raw.transactions")
    assert run(defs, instance, "ingest_daily", LAST).success
    assert query(landing, "SELECT count(*) FROM raw.transactions") == raw_before
    assert (
        query(landing, "SELECT count(*), count(DISTINCT transaction_id) FROM raw.transactions")[0][0]
        == query(landing, "SELECT count(DISTINCT transaction_id) FROM raw.transactions")[0][0]
    )


def test_artifact_alone_reproduces_stored_scores(scored, registered_model, landing):
    info = registered_model.get("risk_model", "1")
    module = load_artifact(info.artifact_path)
    cols = ", ".join(info.feature_names)
    rows = query(
        landing,
        f"SELECT {cols} FROM features.customer_daily WHERE partition_date = ? ORDER BY entity_id",
        [LAST],
    )
    with torch.inference_mode():
        expected = module(torch.tensor(np.array(rows, dtype=np.float32))).numpy()
    stored = np.array([r[1] for r in predictions(landing)], dtype=np.float32)
    np.testing.assert_allclose(stored, expected, rtol=1e-6, atol=1e-7)


def test_model_source_data_version_is_champion_version_and_sha(scored, defs, instance, registered_model):
    assert (
        defs.resolve_job_def("observe_models").execute_in_process(instance=instance, run_config=QUIET).success
    )
    info = registered_model.resolve("risk_model", "champion")
    record = instance.get_latest_data_version_record(dg.AssetKey(["models", "risk_model"]))
    assert record.asset_observation.data_version == f"1@{info.sha256}"
    md = record.asset_observation.metadata
    assert (
        md["partitions_behind"].value == 0 and f"| 1 | 1 | {LAST} | {LAST} |" in md["scored_by_version"].value
    )
    assert "| champion | 1 |" in md["promotions"].value


def test_schema_break_stops_scoring_naming_the_column_and_keeps_the_partition(
    scored, defs, instance, landing
):
    before = predictions(landing)
    drop_lake_column(landing, "features.customer_daily", "amount_std_30d")
    # in the job, the blocking contract check on the features fails first and scoring never starts
    result = run(defs, instance, "score_daily", LAST)
    assert not result.success
    contract = next(e for e in result.get_asset_check_evaluations() if e.check_name == "contract")
    assert not contract.passed
    assert "'amount_std_30d': missing (rule: column_in_dataframe)" in contract.description
    assert not any(e.step_key == "predictions__risk_scores" for e in result.all_events if e.is_step_success)
    # scored on its own, the asset itself refuses before scoring, naming the column
    alone = dg.materialize(
        [risk_scores],
        partition_key=LAST,
        instance=instance,
        resources=build_resources(landing),
        raise_on_error=False,
        selection=dg.AssetSelection.assets(["predictions", "risk_scores"]).without_checks(),
    )
    assert not alone.success
    assert "schema break" in failure_message(alone) and "'amount_std_30d'" in failure_message(alone)
    assert predictions(landing) == before


def test_tampered_artifact_is_refused_and_nothing_is_written(
    scored, defs, instance, landing, registered_model
):
    before = predictions(landing)
    path = registered_model.get("risk_model", "1").artifact_path
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))
    result = run(defs, instance, "score_daily", LAST)
    assert not result.success
    assert "does not match the manifest" in failure_message(result)
    assert predictions(landing) == before


def test_pinned_version_tag_wins_over_the_alias(scored, defs, instance, landing, registered_model, tmp_path):
    v2 = registered_model.register(
        "risk_model", write_artifact(tmp_path / "v2" / "m.safetensors", make_model(seed=5))
    )
    registered_model.promote("risk_model", v2.version)
    pinned = run(defs, instance, "score_daily", LAST, tags={MODEL_VERSION_TAG: "1"})
    assert pinned.success and {r[3] for r in predictions(landing)} == {"1"}
    bad = run(defs, instance, "score_daily", LAST, tags={MODEL_VERSION_TAG: "1", MODEL_SHA_TAG: "0" * 64})
    assert not bad.success
    assert run(defs, instance, "score_daily", LAST).success
    assert {r[3] for r in predictions(landing)} == {"2"}


def test_missing_landing_day_fails_that_partition_only(defs, instance, landing):
    result = run(defs, instance, "ingest_daily", "2026-10-01")
    assert not result.success
    assert "no landing folder for 2026-10-01" in failure_message(result)
    assert run(defs, instance, "ingest_daily", "2026-09-02").success
