"""The partitions definitions of batch-assets, defined once and imported everywhere.

Every data asset, check, sensor and schedule of the demo pipeline shares ``daily_partitions``: one
partition per UTC calendar day. The start date is the first day of the bundled demo data; a day becomes
a partition once it has closed (``end_offset=0``).
"""

from __future__ import annotations

import dagster as dg

DAILY_START_DATE = "2026-09-01"
FEATURE_WINDOW_DAYS = 30

daily_partitions = dg.DailyPartitionsDefinition(start_date=DAILY_START_DATE, timezone="UTC")

# features/customer_daily for day D reads raw days D-29..D (clipped at the start of the partitions).
trailing_feature_window = dg.TimeWindowPartitionMapping(start_offset=-(FEATURE_WINDOW_DAYS - 1))

__all__ = ["DAILY_START_DATE", "FEATURE_WINDOW_DAYS", "daily_partitions", "trailing_feature_window"]
