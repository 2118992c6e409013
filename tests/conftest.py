"""Shared fixtures: every test gets its own state folder and Dagster home under tmp_path."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import dagster as dg
import numpy as np
import pytest
import torch

from batch_assets.core.model_format import TabularMLP
from batch_assets.core.registry import ModelRegistry
from batch_assets.demo.data import DemoConfig, write_landing
from batch_assets.demo.training import export_model
from batch_assets.settings import Settings
from batch_assets.storage.warehouse import FEATURE_COLUMNS

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test does may touch the repository's .batch-assets/ or the user's DAGSTER_HOME."""
    monkeypatch.setenv("BATCH_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster_home"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home").ensure()


SMALL_DEMO = DemoConfig(customers=400, days=14, start=dt.date(2026, 9, 1))


@pytest.fixture
def small_demo() -> DemoConfig:
    """Two weeks, 400 customers: big enough for every code path, fast enough for a unit test."""
    return SMALL_DEMO


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


class State(NamedTuple):
    """A state folder and the Dagster instance that recorded the runs which wrote it."""

    settings: Settings
    instance: dg.DagsterInstance


@contextmanager
def open_state(template: Path, tmp_path: Path) -> Iterator[State]:
    """A private copy of ``template`` (its ``home`` state folder and ``instance`` folder) under ``tmp_path``,
    with that instance open. Tests that need the same runs done first copy them instead of redoing them."""
    home = tmp_path / "home"
    shutil.copytree(template / "home", home, dirs_exist_ok=True)
    shutil.copytree(template / "instance", tmp_path / "instance")
    with dg.instance_for_test(temp_dir=str(tmp_path / "instance")) as inst:
        yield State(Settings(home=home).ensure(), inst)


@pytest.fixture(scope="session")
def ingested_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Once per test process: the small demo's landing files, ingested into the lake by real `ingest_daily`
    runs (raw and features, every day), and the instance that recorded those runs. No model registered."""
    from batch_assets.definitions import build_definitions
    from batch_assets.local_runs import execute_for_partition

    root = tmp_path_factory.mktemp("ingested")
    settings = Settings(home=root / "home").ensure()
    (root / "instance").mkdir()
    write_landing(SMALL_DEMO, settings.landing)
    job = build_definitions(settings).resolve_job_def("ingest_daily")
    with dg.instance_for_test(temp_dir=str(root / "instance")) as inst:
        for day in SMALL_DEMO.dates:
            assert execute_for_partition(job, inst, day.isoformat()).success
    return root


@pytest.fixture
def ingested(ingested_template: Path, tmp_path: Path) -> Iterator[State]:
    """This test's own copy of :func:`ingested_template`: the small demo ingested, in ``settings`` (the same
    folder as the ``settings`` fixture's) and the instance holding its runs."""
    with open_state(ingested_template, tmp_path) as state:
        yield state


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
