"""Partitions, defined once: hourly usage, daily billing, monthly marts. All UTC."""

import dagster as dg

START_DATE = "2026-01-01"

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{START_DATE}-00:00", timezone="UTC", end_offset=0
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=START_DATE, timezone="UTC")
