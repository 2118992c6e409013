"""The one place resources are constructed from settings."""

from __future__ import annotations

from typing import Any

from batch_assets.settings import Settings
from resources.landing import LandingResource
from resources.metrics import MetricsResource
from resources.registry import ModelRegistryResource
from resources.warehouse import WarehouseResource


def build_resources(settings: Settings) -> dict[str, Any]:
    """Resources of the embedded default: a DuckDB file, a local registry, a local landing folder
    and, when configured, a Prometheus Pushgateway."""
    return {
        "warehouse": WarehouseResource(database=str(settings.warehouse)),
        "model_registry": ModelRegistryResource(root=str(settings.registry)),
        "landing": LandingResource(root=str(settings.landing)),
        "metrics": MetricsResource(pushgateway_url=settings.pushgateway_url),
    }
