"""Where landing files arrive: one folder per day under ``root``."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field


class LandingResource(dg.ConfigurableResource):
    """The landing zone of raw files (a local folder in the embedded default)."""

    root: str = Field(
        description="Landing root folder; transactions/event_date=YYYY-MM-DD/*.parquet below it."
    )

    @property
    def path(self) -> Path:
        return Path(self.root)
