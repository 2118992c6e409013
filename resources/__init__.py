"""Dagster resources of batch-assets and the one builder that binds them (``build_resources``).

This is a top-level package of this repository (not the PyPI distribution of the same name).
"""

from resources.builder import build_resources, shell_resources
from resources.compute import ComputeResource
from resources.landing import LandingResource
from resources.metrics import MetricsResource
from resources.object_store import ObjectStoreResource
from resources.registry import ModelRegistryResource
from resources.warehouse import WarehouseResource

__all__ = [
    "ComputeResource",
    "LandingResource",
    "MetricsResource",
    "ModelRegistryResource",
    "ObjectStoreResource",
    "WarehouseResource",
    "build_resources",
    "shell_resources",
]
