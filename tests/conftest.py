"""Shared fixtures: every test gets its own state folder and Dagster home under tmp_path."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import torch

from batch_assets.scoring.demo_data import DemoConfig, write_landing
from batch_assets.scoring.model_format import TabularMLP
from batch_assets.scoring.registry import ModelRegistry
from batch_assets.scoring.training import export_model
from batch_assets.scoring.warehouse import FEATURE_COLUMNS
from batch_assets.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test does may touch the repository's .batch-assets/ or the user's DAGSTER_HOME."""
    monkeypatch.setenv("BATCH_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster_home"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home").ensure()


@pytest.fixture
def small_demo() -> DemoConfig:
    """Two weeks, 400 customers: big enough for every code path, fast enough for a unit test."""
    return DemoConfig(customers=400, days=14, start=dt.date(2026, 9, 1))


@pytest.fixture
def landing(settings: Settings, small_demo: DemoConfig) -> Settings:
    write_landing(small_demo, settings.landing)
    return settings


def make_model(n_features: int = len(FEATURE_COLUMNS), seed: int = 0) -> TabularMLP:
    torch.manual_seed(seed)
    model = TabularMLP(n_features, (16, 8))
    model.set_scaling(torch.rand(n_features) * 10, torch.rand(n_features) * 5 + 0.5)
    return model.eval()


def write_artifact(path: Path, model: TabularMLP | None = None, columns=FEATURE_COLUMNS) -> Path:
    model = model or make_model(len(columns))
    x_ref = np.random.default_rng(0).normal(5, 2, size=(256, len(columns))).astype(np.float32)
    return export_model(
        model,
        path,
        feature_columns=columns,
        x_reference=x_ref,
        training={"window": ["2026-09-01", "2026-09-07"]},
        description="test model",
    )


@pytest.fixture
def registered_model(settings: Settings, tmp_path: Path) -> ModelRegistry:
    """``risk_model`` version 1 promoted to champion in the test registry."""
    registry = ModelRegistry(settings.registry)
    info = registry.register("risk_model", write_artifact(tmp_path / "artifact" / "model.safetensors"))
    registry.promote("risk_model", info.version, "champion")
    return registry


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def lake_connection(settings: Settings):
    """A DuckDB connection with every lake table of ``settings`` registered, as the CLI opens it."""
    from resources import shell_resources

    return shell_resources(settings)["warehouse"].connect()


def drop_lake_column(settings: Settings, table: str, column: str) -> None:
    """Break a lake table's schema as an upstream tool would: rewrite it without ``column``."""
    from deltalake import write_deltalake

    from resources import shell_resources

    lake = shell_resources(settings)["warehouse"].lake()
    data = lake.table(table).to_pyarrow_table().drop_columns([column])
    write_deltalake(
        lake.uri(table), data, mode="overwrite", schema_mode="overwrite", partition_by=["partition_date"]
    )


_DML = re.compile(
    r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|ALTER\s+TABLE)\s+([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)", re.I
)


def lake_sql(settings: Settings, statement: str, params=()) -> list[tuple]:
    """Run ``statement`` over the lake. A statement that changes a table (INSERT, UPDATE, DELETE, ALTER)
    rewrites that whole table as a new Delta version, as another tool editing the table would."""
    from deltalake import write_deltalake

    from resources import shell_resources

    warehouse = shell_resources(settings)["warehouse"]
    m = _DML.match(statement)
    with warehouse.connect() as con:
        if not m:
            return con.execute(statement, list(params)).fetchall()
        table = m.group(1)
        schema, name = table.split(".")
        con.execute(f"CREATE TABLE _copy AS SELECT * FROM {table}")
        con.execute(f'DROP VIEW "{schema}"."{name}"')
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM _copy")
        con.execute(statement, list(params))
        data = con.sql(f"SELECT * FROM {table}").to_arrow_table()
    lake = warehouse.lake()
    write_deltalake(
        lake.uri(table),
        data,
        mode="overwrite",
        schema_mode="overwrite",
        partition_by=lake.table(table).metadata().partition_columns,
    )
    return []
