"""The one place resources are constructed from settings."""

from __future__ import annotations

import os
from typing import Any

from batch_assets.settings import Settings
from resources.compute import ComputeResource
from resources.landing import LandingResource
from resources.metrics import MetricsResource
from resources.registry import ModelRegistryResource
from resources.warehouse import WarehouseResource


def build_resources(settings: Settings) -> dict[str, Any]:
    """Resources of the embedded default: a DuckDB file, a local registry, a local landing folder
    and, when configured, a Prometheus Pushgateway."""
    return {
        "warehouse": WarehouseResource(
            database=str(settings.warehouse),
            threads=settings.duckdb_threads or len(os.sched_getaffinity(0)),
            memory_limit=settings.duckdb_memory_limit,
        ),
        "model_registry": ModelRegistryResource(root=str(settings.registry)),
        "landing": LandingResource(root=str(settings.landing)),
        "compute": ComputeResource(
            device=settings.device,
            torch_threads=settings.torch_threads,
            batch_memory_mb=settings.batch_memory_mb,
        ),
        "metrics": MetricsResource(pushgateway_url=settings.pushgateway_url),
    }
