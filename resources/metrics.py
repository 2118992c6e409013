"""Prometheus metrics of runs and checks, pushed to a Pushgateway when one is configured.

Without ``pushgateway_url`` every method does nothing. A push that fails (gateway down, timeout) logs a
warning and never fails the run: metrics are for the on-call, the partition's truth is in the warehouse.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import dagster as dg
from prometheus_client import CollectorRegistry
from pydantic import Field

from batch_assets import prometheus as metrics

log = logging.getLogger(__name__)


class MetricsResource(dg.ConfigurableResource):
    """Where run and check metrics go: a Pushgateway (``BATCH_ASSETS_PUSHGATEWAY_URL``), or nowhere."""

    pushgateway_url: str | None = Field(
        default=None, description="Pushgateway address, e.g. http://127.0.0.1:9091; unset: push nothing."
    )
    timeout_s: float = Field(default=5.0, description="Timeout of one push.")

    @property
    def enabled(self) -> bool:
        return bool(self.pushgateway_url)

    def push(
        self,
        registry: CollectorRegistry,
        *,
        job: str,
        grouping_key: Mapping[str, str],
        logger: logging.Logger | dg.DagsterLogManager | None = None,
    ) -> bool:
        """Push ``registry`` to its group; True when pushed, False when disabled or the push failed."""
        if not self.pushgateway_url:
            return False
        try:
            metrics.push(
                self.pushgateway_url, registry, job=job, grouping_key=grouping_key, timeout=self.timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - a metrics outage must never fail a run
            (logger or log).warning(
                "could not push metrics to %s (job %s, %s): %s",
                self.pushgateway_url,
                job,
                dict(grouping_key),
                exc,
            )
            return False
        return True

    def push_partition(
        self, figures: metrics.PartitionFigures, *, job: str, logger: logging.Logger | None = None
    ) -> bool:
        return self.push(
            metrics.run_registry(figures),
            job=job,
            grouping_key={"asset": figures.asset, "partition": figures.partition},
            logger=logger,
        )

    def push_check(
        self,
        *,
        job: str,
        asset: str,
        partition: str,
        check: str,
        passed: bool,
        severity: str,
        logger: logging.Logger | None = None,
    ) -> bool:
        return self.push(
            metrics.check_registry(asset, partition, check, passed=passed, severity=severity),
            job=job,
            grouping_key={"asset": asset, "partition": partition, "check": check},
            logger=logger,
        )
