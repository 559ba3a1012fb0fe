"""The runbook states the waits of usage_hourly's Prometheus retries as the code makes them."""

import re
from pathlib import Path

from dagster._core.definitions.policy import calculate_delay

from dagster_billing.assets.usage import PROMETHEUS_RETRY

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def test_runbook_states_the_retry_waits_dagster_uses() -> None:
    waits = [
        calculate_delay(
            n, PROMETHEUS_RETRY.backoff, PROMETHEUS_RETRY.jitter, PROMETHEUS_RETRY.delay
        )
        for n in range(1, PROMETHEUS_RETRY.max_retries + 1)
    ]
    stated = " ".join(RUNBOOK.read_text().split())
    match = re.search(r"retries (\d+) times, waiting (\d+) s, (\d+) s and (\d+) s", stated)
    assert match, "the runbook no longer states the retry waits"
    assert int(match.group(1)) == PROMETHEUS_RETRY.max_retries
    assert [int(g) for g in match.groups()[1:]] == waits
