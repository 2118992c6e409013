"""Every check against a real materialization: clean data passes; each injected fault fails its check."""

import shutil

import dagster as dg
import duckdb
import numpy as np
import pytest

from batch_assets.core.model_format import save_artifact
from batch_assets.core.names import parse_partition_date
from batch_assets.core.registry import ModelRegistry
from batch_assets.datasets import demo_spec
from batch_assets.definitions import build_definitions
from batch_assets.demo.data import DemoConfig, write_landing
from batch_assets.demo.training import export_model
from batch_assets.features import window_start
from batch_assets.local_runs import QUIET, execute_for_partition
from batch_assets.predictions import build_scored_asset
from batch_assets.settings import Settings
from batch_assets.storage.lake import Lake
from batch_assets.storage.warehouse import (
    FEATURE_COLUMNS,
    connect_lake,
    read_landing_day,
    replace_features_partition,
    replace_raw_partition,
)
from resources import build_resources
from tests.conftest import lake_connection, lake_sql, make_model

risk_scores = build_scored_asset(demo_spec())

DAYS = 32  # the last two days have a full 30-day feature window, so drift is judged
LAST = "2026-10-02"
PREDS = dg.AssetKey(["predictions", "risk_scores"])


@pytest.fixture(scope="module")
def base_home(tmp_path_factory):
    """Landing + raw + features for 32 days of 400 customers, and a champion whose reference is day 31."""
    home = tmp_path_factory.mktemp("base") / "home"
    settings = Settings(home=home).ensure()
    cfg = DemoConfig(customers=400, days=DAYS)
    write_landing(cfg, settings.landing)
    # raw and features written as the ingest assets write them (each test gets a fresh instance anyway)
    lake = Lake(str(settings.lake))
    with duckdb.connect() as con:
        connect_lake(con, lake)
        for day in cfg.dates:
            replace_raw_partition(con, lake, day, read_landing_day(settings.landing, day))
            start = parse_partition_date(window_start(day.isoformat()))
            replace_features_partition(con, lake, day, start)
    with lake_connection(settings) as con:
        ref = con.execute(
            f"SELECT {', '.join(FEATURE_COLUMNS)} FROM features.customer_daily "
            "WHERE partition_date = DATE '2026-10-01'"
        ).fetchnumpy()
    x_ref = np.column_stack([ref[c] for c in FEATURE_COLUMNS]).astype(np.float32)
    model = make_model()
    model.set_scaling(torch_tensor(x_ref.mean(0)), torch_tensor(x_ref.std(0)))
    artifact = export_model(
        model,
        home.parent / "model.safetensors",
        feature_columns=FEATURE_COLUMNS,
        x_reference=x_ref,
        training={"window": ["2026-10-01", "2026-10-01"]},
    )
    registry = ModelRegistry(settings.registry)
    registry.promote("risk_model", registry.register("risk_model", artifact).version)
    return home


def torch_tensor(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


@pytest.fixture
def settings(base_home, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(base_home, home, ignore=shutil.ignore_patterns("dagster_home"))
    return Settings(home=home).ensure()


@pytest.fixture
def defs(settings):
    return build_definitions(settings)


def run(defs, instance, job, key=LAST):
    return execute_for_partition(defs.resolve_job_def(job), instance, key)


def evals(result) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def sql(settings, statement, params=()):
    return lake_sql(settings, statement, params)


def md(evaluation, key):
    return evaluation.metadata[key].value


def summary_published(result) -> bool:
    return any(e.is_step_success and e.step_key == "predictions__risk_summary" for e in result.all_events)


def test_clean_partition_passes_every_check(defs, instance):
    result = run(defs, instance, "score_daily")
    assert result.success
    ev = evals(result)
    assert set(ev) == {
        "completeness",
        "dead_letters",
        "validity",
        "provenance",
        "score_drift",
        "contract",
        "feature_drift",
    }
    assert all(e.passed for e in ev.values()), {k: e.description for k, e in ev.items() if not e.passed}
    assert md(ev["completeness"], "expected") == md(ev["completeness"], "scored") > 300
    assert md(ev["completeness"], "missing") == 0
    assert md(ev["score_drift"], "verdict") == "ok" and md(ev["score_drift"], "psi") < 0.1
    assert md(ev["score_drift"], "psi_warn") == 0.1 and md(ev["score_drift"], "psi_error") == 0.25
    assert "drift_by_column" in ev["feature_drift"].metadata
    assert summary_published(result)
    # results are stored against the partition they judged
    key = dg.AssetCheckKey(PREDS, "completeness")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=5)
    assert [h.partition for h in history] == [LAST]


def test_missing_prediction_fails_completeness_with_a_sample(defs, instance, settings):
    assert run(defs, instance, "score_daily").success
    gone = sql(
        settings, "SELECT min(entity_id) FROM predictions.risk_scores WHERE partition_date = ?", [LAST]
    )[0][0]
    sql(
        settings,
        "DELETE FROM predictions.risk_scores WHERE partition_date = ? AND entity_id = ?",
        [LAST, gone],
    )
    ev = evals(run(defs, instance, "check_daily"))["completeness"]
    assert not ev.passed and ev.severity == dg.AssetCheckSeverity.ERROR
    assert md(ev, "missing") == 1 and md(ev, "scored") == md(ev, "expected") - 1
    assert str(gone) in md(ev, "sample_missing")


def test_duplicated_prediction_fails_completeness(defs, instance, settings):
    assert run(defs, instance, "score_daily").success
    # the writer never commits a duplicate; one slipped in by hand (or by another tool) must be caught
    sql(
        settings,
        "INSERT INTO predictions.risk_scores SELECT * FROM predictions.risk_scores "
        "WHERE partition_date = ? ORDER BY entity_id LIMIT 1",
        [LAST],
    )
    ev = evals(run(defs, instance, "check_daily"))["completeness"]
    assert not ev.passed and md(ev, "duplicate_keys") == 1
    assert "copies" in md(ev, "sample_duplicates")


def test_nan_feature_is_dead_lettered_and_the_rest_scored(defs, instance, settings):
    victim = sql(
        settings, "SELECT min(entity_id) FROM features.customer_daily WHERE partition_date = ?", [LAST]
    )[0][0]
    sql(
        settings,
        "UPDATE features.customer_daily SET amount_sum_1d = 'NaN'::DOUBLE "
        "WHERE partition_date = ? AND entity_id = ?",
        [LAST, victim],
    )
    result = run(defs, instance, "score_daily")
    assert result.success
    ev = evals(result)
    assert not ev["contract"].passed and ev["contract"].severity == dg.AssetCheckSeverity.WARN
    assert "amount_sum_1d: not_nullable" in md(ev["contract"], "failures_by_rule")
    assert ev["completeness"].passed and md(ev["completeness"], "dead_lettered") == 1
    assert ev["dead_letters"].passed and "non_finite_feature" in md(ev["dead_letters"], "reasons")
    dead = sql(
        settings,
        "SELECT entity_id, reason, payload->>'amount_sum_1d' FROM predictions.dead_letters "
        "WHERE partition_date = ?",
        [LAST],
    )
    assert dead == [(victim, "non_finite_feature: amount_sum_1d", "nan")]
    assert summary_published(result)


def test_too_many_bad_rows_fail_the_blocking_checks(defs, instance, settings):
    sql(
        settings,
        """UPDATE features.customer_daily SET night_txn_share_1d = 7 WHERE partition_date = ?
                     AND entity_id IN (SELECT entity_id FROM features.customer_daily WHERE partition_date = ?
                                       ORDER BY entity_id LIMIT 20)""",
        [LAST, LAST],
    )
    result = run(defs, instance, "score_daily")
    assert not result.success
    contract = evals(result)["contract"]
    assert not contract.passed and contract.severity == dg.AssetCheckSeverity.ERROR
    assert "night_txn_share_1d: less_than_or_equal_to(1)" in md(contract, "failures_by_rule")
    assert "night_txn_share_1d" in md(contract, "sample_failures")
    assert not summary_published(result)
    # scored anyway (from a selection without the contract check), the rows are dead-lettered and the
    # blocking dead-letter check fails
    scored = dg.materialize(
        [risk_scores],
        partition_key=LAST,
        instance=instance,
        resources=build_resources(settings),
        selection=dg.AssetSelection.assets(PREDS).without_checks(),
        run_config=QUIET,
    )
    assert scored.success
    dead = evals(run(defs, instance, "check_daily"))["dead_letters"]
    assert not dead.passed and dead.severity == dg.AssetCheckSeverity.ERROR
    assert md(dead, "dead_lettered") == 20 and md(dead, "fraction") > md(dead, "threshold") == 0.01
    assert "out_of_range" in md(dead, "reasons") and "night_txn_share_1d=7" in md(dead, "sample_dead_letters")


def test_shifted_features_warn_feature_drift_and_flag_score_drift(defs, instance, settings):
    sql(
        settings,
        """UPDATE features.customer_daily SET amount_sum_1d = amount_sum_1d * 4 + 50,
                     amount_max_1d = amount_max_1d * 4 + 50, online_txn_share_1d = 1
                     WHERE partition_date = ?""",
        [LAST],
    )
    result = run(defs, instance, "score_daily")
    ev = evals(result)
    fd = ev["feature_drift"]
    assert not fd.passed and fd.severity == dg.AssetCheckSeverity.WARN
    assert "amount_sum_1d" in fd.description and "amount_max_1d" in fd.description
    table = md(fd, "drift_by_column")
    assert table.startswith("| column | verdict | rows | psi |") and "online_txn_share_1d" in table
    sd = ev["score_drift"]
    assert not sd.passed and md(sd, "psi") > 0.1 and md(sd, "ks_pvalue") < 0.01
    assert sd.severity == (
        dg.AssetCheckSeverity.ERROR if md(sd, "psi") > 0.25 else dg.AssetCheckSeverity.WARN
    )
    assert result.success and summary_published(result)  # drift informs; it does not block publishing


def test_wrong_dtype_fails_the_contract_naming_column_and_rule(defs, instance, settings):
    sql(settings, "ALTER TABLE features.customer_daily ALTER amount_mean_30d TYPE VARCHAR")
    result = run(defs, instance, "score_daily")
    assert not result.success
    contract = evals(result)["contract"]
    assert not contract.passed and contract.severity == dg.AssetCheckSeverity.ERROR
    assert "'amount_mean_30d': dtype string (rule: dtype('float64'))" in contract.description
    assert sql(settings, "SELECT count(*) FROM predictions.risk_scores")[0][0] == 0
    assert not summary_published(result)


def test_tampered_manifest_sha_fails_provenance(defs, instance, settings):
    assert run(defs, instance, "score_daily").success
    manifest = settings.registry / "risk_model" / "1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"sha256": "', '"sha256": "0'))
    ev = evals(run(defs, instance, "check_daily"))["provenance"]
    assert not ev.passed and "registry manifest" in ev.description
    assert md(ev, "recorded_sha256") != md(ev, "manifest_sha256")


def test_rows_from_another_run_fail_provenance(defs, instance, settings):
    assert run(defs, instance, "score_daily").success
    sql(
        settings,
        "UPDATE predictions.risk_scores SET run_id = 'someone-else' WHERE partition_date = ? AND "
        "entity_id = (SELECT min(entity_id) FROM predictions.risk_scores WHERE partition_date = ?)",
        [LAST, LAST],
    )
    ev = evals(run(defs, instance, "check_daily"))["provenance"]
    assert not ev.passed and md(ev, "mismatched_rows") == 1 and "someone-else" in md(ev, "sample_mismatched")


def test_scores_outside_the_declared_range_fail_validity_and_block_the_summary(
    defs, instance, settings, tmp_path
):
    model = make_model()
    narrow = save_artifact(
        model,
        tmp_path / "narrow.safetensors",
        architecture={"name": "tabular_mlp", "params": {"n_features": 15, "hidden": [16, 8]}},
        inputs=[{"name": c, "dtype": "float32"} for c in FEATURE_COLUMNS],
        output={"name": "score", "dtype": "float32", "range": [0.0, 0.0001]},
    )
    registry = ModelRegistry(settings.registry)
    registry.promote("risk_model", registry.register("risk_model", narrow).version)
    result = run(defs, instance, "score_daily")
    ev = evals(result)["validity"]
    assert not ev.passed and md(ev, "invalid") > 0 and md(ev, "threshold") == "[0, 0.0001]"
    assert "score" in md(ev, "sample_invalid")
    assert not result.success and not summary_published(result)


def test_tiny_partition_is_not_judged_for_drift(defs, instance, settings):
    sql(
        settings,
        """DELETE FROM features.customer_daily WHERE partition_date = ? AND entity_id NOT IN
                     (SELECT entity_id FROM features.customer_daily WHERE partition_date = ? ORDER BY entity_id
                      LIMIT 50)""",
        [LAST, LAST],
    )
    ev = evals(run(defs, instance, "score_daily"))
    assert ev["score_drift"].passed and ev["score_drift"].description.startswith("not judged: 50 finite rows")
    assert ev["feature_drift"].passed and "not judged" in ev["feature_drift"].description


def test_incomplete_feature_window_is_not_judged(defs, instance):
    key = "2026-09-05"
    assert run(defs, instance, "ingest_daily", key).success  # records window_days=5 in the instance
    ev = evals(run(defs, instance, "score_daily", key))
    assert ev["score_drift"].passed and "5 of 30 days of history" in ev["score_drift"].description
    assert ev["feature_drift"].passed and "5 of 30 days of history" in ev["feature_drift"].description


def test_chunked_range_run_loads_the_model_once_and_stores_checks_per_partition(defs, instance, settings):
    days = ["2026-10-01", "2026-10-02"]
    result = defs.resolve_job_def("score_daily").execute_in_process(
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    assert result.success
    loads = [
        e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == PREDS
    ]
    assert sorted(e.partition for e in loads) == days  # one materialization per partition, from one step
    md_ = loads[0].step_materialization_data.materialization.metadata
    assert md_["partitions_in_run"].value == 2 and md_["model_load_s"].value >= 0
    assert md_["chunk"].value == "2026-10-01..2026-10-02"
    assert (
        len({e.step_materialization_data.materialization.metadata["input_sha256"].value for e in loads}) == 2
    )
    storage = instance.event_log_storage
    for name in ("completeness", "dead_letters", "validity", "provenance", "score_drift"):
        history = storage.get_asset_check_execution_history(dg.AssetCheckKey(PREDS, name), limit=10)
        per_partition = {h.partition: h.status.value for h in history if h.partition is not None}
        assert per_partition == {d: "SUCCEEDED" for d in days}, (name, per_partition)
    versions = sql(
        settings,
        "SELECT DISTINCT partition_date::VARCHAR, model_version FROM predictions.risk_scores ORDER BY 1",
    )
    assert versions == [(d, "1") for d in days]


def test_a_failing_partition_in_a_chunk_blocks_the_chunk_summary(defs, instance, settings):
    days = ["2026-10-01", "2026-10-02"]
    sql(
        settings,
        "DELETE FROM features.customer_daily WHERE partition_date = ? AND entity_id = "
        "(SELECT min(entity_id) FROM features.customer_daily WHERE partition_date = ?)",
        [days[1], days[1]],
    )
    assert (
        defs.resolve_job_def("score_daily")
        .execute_in_process(
            instance=instance,
            run_config=QUIET,
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": days[0],
                "dagster/asset_partition_range_end": days[-1],
            },
        )
        .success
    )
    sql(
        settings,
        "INSERT INTO features.customer_daily SELECT * REPLACE (entity_id + 10000000 AS entity_id) "
        "FROM features.customer_daily WHERE partition_date = ? LIMIT 1",
        [days[1]],
    )
    result = defs.resolve_job_def("check_daily").execute_in_process(
        instance=instance,
        run_config=QUIET,
        raise_on_error=False,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
    )
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(PREDS, "completeness"), limit=10
    )
    latest = {}
    for h in history:  # newest first
        if h.partition is not None and h.partition not in latest:
            latest[h.partition] = h.status.value
    assert latest == {days[0]: "SUCCEEDED", days[1]: "FAILED"}
    assert not result.success


def test_latest_materializations_reads_each_partitions_newest_in_one_pass():
    from batch_assets.history import latest_materializations

    key = dg.AssetKey(["predictions", "t"])
    with dg.instance_for_test() as instance:
        for version in ("1", "2"):
            for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
                if version == "2" and day == "2026-10-02":
                    continue  # 2026-10-02 stays on version 1
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(key, partition=day, metadata={"model_version": version})
                )
        got = latest_materializations(instance, key, ["2026-10-01", "2026-10-02", "2026-10-04"])
    assert {p: r.asset_materialization.metadata["model_version"].value for p, r in got.items()} == {
        "2026-10-01": "2",
        "2026-10-02": "1",
    }  # a partition never materialized is absent


def test_scored_versions_reads_the_latest_of_every_partition_past_one_page():
    from batch_assets import history

    key = dg.AssetKey(["predictions", "t"])
    days = [f"p{i:04d}" for i in range(history._PAGE + 20)]
    with dg.instance_for_test() as instance:
        for version in ("1", "2"):
            for day in days if version == "1" else days[::2]:
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(key, partition=day, metadata={"model_version": version})
                )
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition="bare"))
        scored = history.scored_versions(instance, key)
        by_version = history.partitions_by_version(instance, key)
        assert history.latest_materializations(instance, key, []) == {}
    assert scored == {d: "2" if i % 2 == 0 else "1" for i, d in enumerate(days)} | {"bare": "?"}
    assert by_version["2"] == days[::2] and by_version["1"] == days[1::2] and by_version["?"] == ["bare"]
