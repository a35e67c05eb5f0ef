"""The suite's order: under `make test` each worker takes the next whole file when it runs out,
so the files that take longest go first and the quick ones fill in at the end (the longest
dealt last kept one worker busy while the other had nothing left to do)."""

from __future__ import annotations

import pytest

LONGEST_FIRST = (
    "test_failover.py",
    "test_migrate.py",
    "test_health.py",
    "test_autoscale.py",
    "test_membership.py",
    "test_every_kind.py",
    "test_rebalance_faults.py",
    "test_rebalance.py",
    "test_scheduling.py",
    "test_browser.py",
    "test_postgres.py",
)
"""Integration files by the time they took (worker seconds, 2 workers: 400 down to 40); the
other integration files follow, then the unit tests. A stale list only orders worse."""


def _rank(item: pytest.Item) -> tuple[int, int]:
    name, integration = item.path.name, "integration" in item.path.parts
    if integration and name in LONGEST_FIRST:
        return 0, LONGEST_FIRST.index(name)
    return (1 if integration else 2), 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: each file's tests keep their order (a module's fixtures rely on it).
    items.sort(key=_rank)
