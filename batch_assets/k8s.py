"""Kubernetes settings of the steps: ``dagster-k8s/config`` tags and the executor's per-step overrides.

``SCORING_K8S_CONFIG`` is attached to the scoring asset as an op tag, so under ``k8s_job_executor`` (one
pod per step) the scoring pod asks for CPU scoring resources. Setting ``BATCH_ASSETS_K8S_SCORING_GPU=1``
adds, through the executor's ``per_step_k8s_config``, a GPU limit, a node selector
(``BATCH_ASSETS_K8S_GPU_NODE_SELECTOR``, JSON, default ``{"batch-assets/pool": "gpu"}``) and a toleration
of the ``nvidia.com/gpu`` taint. Other steps (raw, features, checks, summary) get ``STEP_K8S_CONFIG``.
Nothing here reads the environment at import time; :func:`executor_config` takes the settings.
"""

from __future__ import annotations

import json
from typing import Any

K8S_CONFIG_TAG = "dagster-k8s/config"

# every step pod: small, never retried by Kubernetes (Dagster owns retries), cleaned up after an hour
STEP_K8S_CONFIG: dict[str, Any] = {
    "container_config": {
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
    },
    "job_spec_config": {"backoff_limit": 0, "ttl_seconds_after_finished": 3600},
}

# the scoring step: torch on CPU, the model and a partition's features in memory
SCORING_K8S_CONFIG: dict[str, Any] = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "2", "memory": "4Gi"},
            "limits": {"cpu": "4", "memory": "8Gi"},
        },
        # a CPU limit is a quota, not an affinity: torch would start one thread per node core
        "env": [{"name": "BATCH_ASSETS_TORCH_THREADS", "value": "4"}],
    },
    "pod_template_spec_metadata": {"labels": {"batch-assets/step": "scoring"}},
    "job_spec_config": {"backoff_limit": 0, "ttl_seconds_after_finished": 3600},
}

DEFAULT_GPU_NODE_SELECTOR = {"batch-assets/pool": "gpu"}
GPU_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def scoring_op_tags() -> dict[str, Any]:
    """Op tags of the scoring asset (Dagster stores the dict as a JSON string)."""
    return {K8S_CONFIG_TAG: SCORING_K8S_CONFIG}


def gpu_scoring_override(node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    """What the GPU profile adds to the scoring pod: one GPU, the GPU node pool, its taint tolerated."""
    return {
        "container_config": {
            "resources": {
                "requests": {"cpu": "2", "memory": "8Gi"},
                "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            },
            # cuda when the image's torch sees the GPU; a CPU-only image still scores, on CPU
            "env": [
                {"name": "BATCH_ASSETS_TORCH_THREADS", "value": "4"},
                {"name": "BATCH_ASSETS_DEVICE", "value": "auto"},
            ],
        },
        "pod_spec_config": {
            "node_selector": node_selector or DEFAULT_GPU_NODE_SELECTOR,
            "tolerations": GPU_TOLERATIONS,
        },
    }


def parse_node_selector(value: str | None) -> dict[str, str] | None:
    if not value:
        return None
    selector = json.loads(value)
    if not isinstance(selector, dict) or not all(isinstance(v, str) for v in selector.values()):
        raise ValueError(f"BATCH_ASSETS_K8S_GPU_NODE_SELECTOR={value!r}: expected a JSON object of strings")
    return selector


def executor_config(
    scoring_ops: str | list[str], gpu: bool, node_selector: dict[str, str] | None = None
) -> dict[str, Any]:
    """Config of ``k8s_job_executor``: defaults for every step pod, the GPU override for scoring when asked.

    The image, namespace, env and secrets come from the ``K8sRunLauncher`` of the instance (Helm values).
    """
    config: dict[str, Any] = {"step_k8s_config": STEP_K8S_CONFIG}
    if gpu:
        ops = [scoring_ops] if isinstance(scoring_ops, str) else scoring_ops
        config["per_step_k8s_config"] = {op: gpu_scoring_override(node_selector) for op in ops}
    return config
