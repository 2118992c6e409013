"""Where and how models run: torch device and threads, and the scorer's memory budget per batch."""

from __future__ import annotations

import os

import dagster as dg
import torch
from pydantic import Field

from batch_assets.core.scorer import DEFAULT_BATCH_MEMORY_MB

DEVICES = ("cpu", "cuda", "auto")


class ComputeResource(dg.ConfigurableResource):
    """Scoring compute, set explicitly rather than left to library defaults.

    ``device="auto"`` picks CUDA when ``torch.cuda.is_available()``; the code runs on CPU without a GPU.
    ``torch_threads=0`` uses every core this process may run on (its CPU affinity, which cpusets set), not
    the host's core count. A Kubernetes CPU limit is a quota, not an affinity: set ``torch_threads``
    (``BATCH_ASSETS_TORCH_THREADS``) to it there, or torch oversubscribes the quota.
    """

    device: str = Field(default="cpu", description="cpu, cuda or auto (cuda when available).")
    torch_threads: int = Field(
        default=0, description="torch intra-op threads; 0: the CPUs this process may use."
    )
    batch_memory_mb: int = Field(
        default=DEFAULT_BATCH_MEMORY_MB, description="Memory budget of one record batch in flight."
    )

    def setup(self) -> torch.device:
        """Apply the thread setting and return the device to score on."""
        if self.device not in DEVICES:
            raise ValueError(f"compute device {self.device!r}: expected one of {', '.join(DEVICES)}")
        threads = self.torch_threads or len(os.sched_getaffinity(0))  # the CPUs this process may use
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("compute device 'cuda' was configured, but torch sees no CUDA device")
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)
