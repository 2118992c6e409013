"""Shared fixtures: every test gets its own state folder and Dagster home under tmp_path."""

from __future__ import annotations

import datetime as dt
import os
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
