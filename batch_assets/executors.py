"""The run executor of the embedded default and of the scale-out deployments, from the settings."""

from __future__ import annotations

import dagster as dg

from batch_assets.settings import Settings


def build_executor(settings: Settings, scoring_ops: list[str]) -> dg.ExecutorDefinition:
    """``BATCH_ASSETS_EXECUTOR``: in_process (default), multiprocess, or k8s (one pod per step; the
    ``scoring_ops`` get the GPU profile when ``BATCH_ASSETS_K8S_SCORING_GPU`` asks for it)."""
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "multiprocess":
        # Step processes fork from a server that has already imported this module (dagster, torch,
        # duckdb): a step starts in well under a second instead of paying the imports again.
        return dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["batch_assets.definitions"]}}},
            name="multiprocess",
        )
    from dagster_k8s import k8s_job_executor

    from batch_assets.k8s import executor_config, parse_node_selector

    config = executor_config(
        scoring_ops, settings.k8s_scoring_gpu, parse_node_selector(settings.k8s_gpu_node_selector)
    )
    return k8s_job_executor.configured(config, name="k8s")
