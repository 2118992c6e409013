"""Spec files: the demo is one, and every spec error fails at load with a message naming the field."""

import copy
import dataclasses
from pathlib import Path

import dagster as dg
import pytest
import yaml

from batch_assets.core.spec_file import SpecError, parse_spec
from batch_assets.datasets import demo_spec
from batch_assets.definitions import build_definitions
from batch_assets.keys import partitions_of
from batch_assets.settings import Settings
from batch_assets.storage.warehouse import FEATURE_COLUMNS
from partitions import daily_partitions

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "batch_assets" / "specs" / "examples" / "device_failures.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())


# The demo's feature contract, as the SQL of features/customer_daily guarantees it (storage/warehouse.py).
CUSTOMER_DAILY_LIMITS = {
    "txn_count_1d": (0, None),
    "amount_sum_1d": (0, None),
    "amount_max_1d": (0, None),
    "night_txn_share_1d": (0, 1),
    "online_txn_share_1d": (0, 1),
    "new_country_txn_1d": (0, None),
    "txn_count_7d": (0, None),
    "amount_sum_7d": (0, None),
    "txn_count_30d": (1, None),
    "amount_mean_30d": (0, None),
    "amount_std_30d": (0, None),
    "amount_max_ratio_1d_30d": (0, None),
    "distinct_merchant_categories_30d": (1, None),
    "distinct_countries_30d": (1, None),
    "days_since_prev_txn": (0, 366),
}


def test_the_demo_is_a_spec_file():
    spec = demo_spec()
    assert (spec.name, spec.features.asset, spec.features.table, spec.features.key) == (
        "risk_scores",
        "features/customer_daily",
        "features.customer_daily",
        "entity_id",
    )
    assert (spec.model.name, spec.model.alias, spec.output.table, spec.summary_table) == (
        "risk_model",
        "champion",
        "predictions.risk_scores",
        "predictions.risk_summary",
    )
    assert spec.scoring.backfill_chunk == 10  # the demo's own, so its 60 days fan out as 6 runs (default 60)
    assert partitions_of(spec) is daily_partitions
    contract = spec.contract
    assert list(contract.columns) == list(FEATURE_COLUMNS)  # the columns the feature SQL computes, in order
    assert contract.limits() == CUSTOMER_DAILY_LIMITS and contract.max_bad_row_fraction == 0.01
    assert not any(rule.nullable for rule in contract.columns.values())
    assert (
        repr(contract.columns["night_txn_share_1d"]) == "ColumnRule(ge=0, le=1, nullable=False)"
    )  # ints stay ints


def _error(change) -> str:
    data = copy.deepcopy(BASE)
    change(data)
    with pytest.raises(SpecError) as err:
        parse_spec(data, "my.yaml")
    return str(err.value)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda d: d.pop("model"), "model", "required field is missing"),
        (lambda d: d["model"].pop("name"), "model.name", "required field is missing"),
        (
            lambda d: d["checks"]["feature_drift_overrides"].update(humidity={"psi_warn": 0.2}),
            "checks.feature_drift_overrides.humidity",
            "unknown column 'humidity'",
        ),
        (lambda d: d["features"].update(key="rpm"), "features", "key 'rpm' is also listed in columns"),
        (
            lambda d: d["checks"].update(score_drift={"psi_warn": 0.3, "psi_error": 0.2}),
            "checks.score_drift",
            "psi_warn 0.3 is greater than psi_error 0.2",
        ),
        (lambda d: d["checks"].update(max_dead_letter_fraction=1.5), "checks.max_dead_letter_fraction", "1"),
        (lambda d: d["checks"]["score_drift"].update(psi_warn=-1), "checks.score_drift.psi_warn", "0"),
        (lambda d: d["features"]["columns"].update(rpm={"ge": 5, "le": 1}), "features.columns.rpm", "ge 5"),
        (lambda d: d["output"].update(table="predictions.x;drop"), "output.table", "invalid SQL identifier"),
        (lambda d: d["model"].update(name="../etc"), "model.name", "invalid model name"),
        (
            lambda d: d["partitioning"].update(start="2026-11-01"),
            "partitioning",
            "not a hourly partition key",
        ),
        (lambda d: d["features"].update(files="data/{day}"), "features.files", "unknown placeholder"),
        (lambda d: d.update(thresholds={}), "thresholds", "unknown field"),
        (
            lambda d: d["output"].update(dead_letter_table="features.device_hourly"),
            "output.dead_letter_table",
            "already used by features.table",
        ),
    ],
)
def test_spec_errors_name_the_field(change, field, words):
    message = _error(change)
    assert message.startswith("my.yaml: invalid spec")
    assert f"  {field}: " in message and words in message, message


def test_a_bad_spec_fails_definitions_at_load(tmp_path):
    bad = copy.deepcopy(BASE)
    bad["checks"]["feature_drift_overrides"] = {"temprature_c": {"psi_warn": 0.2}}
    path = tmp_path / "specs" / "bad.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(bad))
    settings = Settings(home=tmp_path / "home", spec_locations=(path.parent,))
    with pytest.raises(SpecError, match=r"checks\.feature_drift_overrides\.temprature_c: unknown column"):
        build_definitions(settings)


def test_a_spec_may_not_reuse_the_demos_names(tmp_path):
    clash = copy.deepcopy(BASE)
    clash["model"]["name"] = "risk_model"
    path = tmp_path / "clash.yml"
    path.write_text(yaml.safe_dump(clash))
    with pytest.raises(SpecError, match=r"model\.name: 'risk_model' is already used by the demo"):
        build_definitions(Settings(home=tmp_path / "home", spec_locations=(path,)))


def test_missing_spec_location_is_named(tmp_path):
    with pytest.raises(SpecError, match="no such spec file or folder"):
        build_definitions(Settings(home=tmp_path / "home", spec_locations=(tmp_path / "nope",)))


def test_settings_read_spec_locations_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BATCH_ASSETS_SPECS", f"{EXAMPLE}:{tmp_path}")
    assert Settings.from_env().spec_locations == (EXAMPLE, tmp_path.resolve())


def test_without_files_the_features_asset_is_external_and_still_checked(tmp_path):
    data = copy.deepcopy(BASE)
    data["features"].pop("files")
    path = tmp_path / "external.yaml"
    path.write_text(yaml.safe_dump(data))
    defs = build_definitions(Settings(home=tmp_path / "home", spec_locations=(path,)))
    features = defs.resolve_asset_graph().get(dg.AssetKey(["features", "device_hourly"]))
    assert not features.is_materializable
    assert features.partitions_def.get_first_partition_key() == "2026-11-01-00:00"
    nodes = set(defs.resolve_job_def("score_failure_scores").graph.node_dict)
    assert {
        "failure_scores_features_checks",
        "predictions__failure_scores",
        "predictions__failure_summary",
    } <= nodes


def test_every_rollout_sensor_ticks_at_the_configured_interval(tmp_path):
    """BATCH_ASSETS_ROLLOUT_INTERVAL_S applies to a spec file's rollout sensor as to the demo's."""
    settings = dataclasses.replace(
        Settings(home=tmp_path / "home", spec_locations=(EXAMPLE,)), rollout_interval_s=7
    )
    defs = build_definitions(settings)
    sensors = [s for s in defs.sensors if s.name.endswith("_rollout")]
    assert len(sensors) == 2 and {s.minimum_interval_seconds for s in sensors} == {7}


def test_an_unquoted_yaml_date_is_the_partition_key_it_spells():
    data = copy.deepcopy(BASE)
    data["partitioning"] = yaml.safe_load("type: daily\nstart: 2026-11-01")  # YAML reads a date here
    assert parse_spec(data).partitioning.start == "2026-11-01"
