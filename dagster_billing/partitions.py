"""Partitions, defined once: hourly usage, daily billing, monthly marts. All UTC."""

import dagster as dg

START_DATE = "2026-01-01"

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{START_DATE}-00:00", timezone="UTC", end_offset=0
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=START_DATE, timezone="UTC")


def partition_range_tags(first_key: str, last_key: str) -> dict[str, str]:
    """Tags for one run over the partitions first_key..last_key (inclusive): what a
    single-run backfill launches, for the demo and tests that bill several days at once."""
    return {
        "dagster/asset_partition_range_start": first_key,
        "dagster/asset_partition_range_end": last_key,
    }
