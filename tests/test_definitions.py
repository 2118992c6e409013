"""The one Definitions object: asset keys, groups, lineage, and Dagster's own validation of the workspace."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from batch_assets.definitions import build_definitions
from batch_assets.features import window_start
from partitions import daily_partitions

REPO = Path(__file__).resolve().parent.parent


def test_asset_graph(settings):
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "raw/transactions": "raw",
        "features/customer_daily": "features",
        "predictions/risk_scores": "predictions",
        "predictions/risk_summary": "predictions",
        "models/risk_model": "models",
    }
    parents = {
        k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
        for k in graph.get_all_asset_keys()
    }
    assert parents["features/customer_daily"] == ["raw/transactions"]
    assert parents["predictions/risk_scores"] == ["features/customer_daily", "models/risk_model"]
    assert parents["predictions/risk_summary"] == ["predictions/risk_scores"]
    assert graph.get(dg.AssetKey(["models", "risk_model"])).is_observable
    for key in graph.materializable_asset_keys:
        assert graph.get(key).partitions_def == daily_partitions


def test_feature_window_is_thirty_days_clipped_at_the_start():
    assert window_start("2026-10-30") == "2026-10-01"
    assert window_start("2026-09-05") == "2026-09-01"


def test_every_resource_is_bound_under_the_state_folder(settings):
    resources = build_definitions(settings).resources
    assert resources["warehouse"].lake_uri == str(settings.lake)
    assert resources["warehouse"].database == ":memory:"  # DuckDB holds no data: the lake does
    assert resources["model_registry"].root == str(settings.registry)
    assert resources["landing"].root == str(settings.landing)


@pytest.mark.slow
def test_dagster_definitions_validate_workspace(tmp_path):
    env = {**os.environ, "BATCH_ASSETS_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path)}
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Validation successful" in proc.stdout + proc.stderr
