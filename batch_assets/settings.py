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


@dataclass(frozen=True)
class Settings:
    """Paths of the embedded default deployment, all under ``home``."""

    home: Path

    @classmethod
    def from_env(cls) -> Settings:
        value = os.environ.get(HOME_ENV)
        return cls(home=Path(value).expanduser().resolve() if value else REPO_ROOT / ".batch-assets")

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def registry(self) -> Path:
        return self.home / "registry"

    @property
    def landing(self) -> Path:
        return self.home / "landing"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster_home"

    def ensure(self) -> Settings:
        for path in (self.home, self.registry, self.landing, self.dagster_home):
            path.mkdir(parents=True, exist_ok=True)
        return self
