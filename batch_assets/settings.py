"""Where state lives: one folder, ``BATCH_ASSETS_HOME`` (default ``.batch-assets/`` in the repository).

Read when definitions or commands are built, never at import time, so tests point everything at a
``tmp_path`` by passing a :class:`Settings` (or setting the variable) without reloading modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
HOME_ENV = "BATCH_ASSETS_HOME"
EXECUTOR_ENV = "BATCH_ASSETS_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")
SPECS_ENV = "BATCH_ASSETS_SPECS"
REGISTRY_URI_ENV = "BATCH_ASSETS_REGISTRY_URI"
LANDING_URI_ENV = "BATCH_ASSETS_LANDING_URI"
LAKE_URI_ENV = "BATCH_ASSETS_LAKE_URI"
S3_ENDPOINT_ENV = "BATCH_ASSETS_S3_ENDPOINT"
# ObjectStoreResource field -> the environment variables that give it, first set one wins. The same names
# for runs (bound as dg.EnvVar, read in the run process) and for the CLI (read in its own process).
S3_ENV: dict[str, tuple[str, ...]] = {
    "endpoint_url": (S3_ENDPOINT_ENV,),
    "region_name": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "aws_access_key_id": ("AWS_ACCESS_KEY_ID",),
    "aws_secret_access_key": ("AWS_SECRET_ACCESS_KEY",),
    "aws_session_token": ("AWS_SESSION_TOKEN",),
}


def available_cpus() -> int:
    """CPUs this process may run on (its affinity, which cpusets set), not the host's core count."""
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Settings:
    """Paths of the embedded default deployment, all under ``home``, and the run executor.

    The embedded default runs every step of a run in one process (``in_process``), which saves a process
    start per step; ``multiprocess`` runs steps in parallel processes and ``k8s`` one pod per step
    (``k8s_job_executor``, docs/deployment.md). Every table is a Delta table in the lake, which takes
    concurrent writers of different partitions in all three.
    """

    home: Path
    executor: str = "in_process"
    schedule_cron: str = "30 1 * * *"
    schedule_timezone: str = "UTC"
    rollout_window: int | None = None
    rollout_max_per_tick: int = 10
    device: str = "cpu"
    torch_threads: int = 0
    batch_memory_mb: int = 64
    duckdb_memory_limit: str | None = None
    duckdb_threads: int = 0
    # Scored-dataset spec files, or folders of them, loaded next to the demo (BATCH_ASSETS_SPECS).
    spec_locations: tuple[Path, ...] = ()
    rollout_interval_s: int = 30
    pushgateway_url: str | None = None
    # Scale-out (README "Scaling out"): local paths or s3://bucket/prefix URIs; None keeps the embedded default.
    registry_uri: str | None = None
    landing_uri: str | None = None
    lake_uri: str | None = None
    lake_retention_hours: int = 168  # BATCH_ASSETS_LAKE_RETENTION_HOURS: history kept by `vacuum`
    k8s_scoring_gpu: bool = (
        False  # BATCH_ASSETS_K8S_SCORING_GPU=1: scoring pods on the GPU pool (batch_assets/k8s.py)
    )
    k8s_gpu_node_selector: str | None = None  # BATCH_ASSETS_K8S_GPU_NODE_SELECTOR, a JSON object

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ValueError(f"{EXECUTOR_ENV}={self.executor!r}: expected one of {', '.join(EXECUTORS)}")

    @classmethod
    def from_env(cls) -> Settings:
        value = os.environ.get(HOME_ENV)
        window = os.environ.get("BATCH_ASSETS_ROLLOUT_WINDOW")
        return cls(
            home=Path(value).expanduser().resolve() if value else REPO_ROOT / ".batch-assets",
            executor=os.environ.get(EXECUTOR_ENV, "in_process"),
            schedule_cron=os.environ.get("BATCH_ASSETS_SCHEDULE_CRON", "30 1 * * *"),
            schedule_timezone=os.environ.get("BATCH_ASSETS_SCHEDULE_TZ", "UTC"),
            rollout_window=int(window) if window else None,
            rollout_max_per_tick=int(os.environ.get("BATCH_ASSETS_ROLLOUT_MAX_PER_TICK", "10")),
            device=os.environ.get("BATCH_ASSETS_DEVICE", "cpu"),
            torch_threads=int(os.environ.get("BATCH_ASSETS_TORCH_THREADS", "0")),
            batch_memory_mb=int(os.environ.get("BATCH_ASSETS_BATCH_MEMORY_MB", "64")),
            duckdb_memory_limit=os.environ.get("BATCH_ASSETS_DUCKDB_MEMORY_LIMIT") or None,
            duckdb_threads=int(os.environ.get("BATCH_ASSETS_DUCKDB_THREADS", "0")),
            spec_locations=tuple(
                Path(p).expanduser().resolve() for p in os.environ.get(SPECS_ENV, "").split(os.pathsep) if p
            ),
            rollout_interval_s=int(os.environ.get("BATCH_ASSETS_ROLLOUT_INTERVAL_S", "30")),
            pushgateway_url=os.environ.get("BATCH_ASSETS_PUSHGATEWAY_URL") or None,
            registry_uri=os.environ.get(REGISTRY_URI_ENV) or None,
            landing_uri=os.environ.get(LANDING_URI_ENV) or None,
            lake_uri=os.environ.get(LAKE_URI_ENV) or None,
            lake_retention_hours=int(os.environ.get("BATCH_ASSETS_LAKE_RETENTION_HOURS", "168")),
            k8s_scoring_gpu=os.environ.get("BATCH_ASSETS_K8S_SCORING_GPU", "") in ("1", "true", "yes"),
            k8s_gpu_node_selector=os.environ.get("BATCH_ASSETS_K8S_GPU_NODE_SELECTOR") or None,
        )

    @property
    def lake(self) -> Path:
        """The embedded default lake root: one Delta table per folder ``<schema>/<table>``."""
        return self.home / "lake"

    @property
    def lake_location(self) -> str:
        """The lake the resources and the CLI use: ``BATCH_ASSETS_LAKE_URI`` or ``lake``."""
        return self.lake_uri or str(self.lake)

    @property
    def registry(self) -> Path:
        return self.home / "registry"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def registry_location(self) -> str:
        """The registry the resources and the CLI use: ``BATCH_ASSETS_REGISTRY_URI`` or ``registry``."""
        return self.registry_uri or str(self.registry)

    @property
    def landing_location(self) -> str:
        return self.landing_uri or str(self.landing)

    @property
    def uses_s3(self) -> bool:
        return any(u and u.startswith("s3://") for u in (self.registry_uri, self.landing_uri, self.lake_uri))

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    @property
    def s3_variables(self) -> dict[str, str]:
        """ObjectStoreResource field -> the name (never the value) of the set variable that gives it; none
        when nothing is on S3, so the embedded default reads no AWS variable."""
        if not self.uses_s3:
            return {}
        return {
            field: next(n for n in names if os.environ.get(n))
            for field, names in S3_ENV.items()
            if any(os.environ.get(n) for n in names)
        }

    @property
    def duckdb_thread_count(self) -> int:
        """``BATCH_ASSETS_DUCKDB_THREADS``, or one thread per CPU this process may use."""
        return self.duckdb_threads or available_cpus()

    def ensure(self) -> Settings:
        for path in (self.home, self.registry, self.landing, self.lake, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        return self
