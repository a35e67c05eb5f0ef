"""How fleetflow's tasks retry: only on errors that a retry can fix."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from fleetflow.errors import FleetflowError


def retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry exactly what the error tree calls retryable: an unreachable or slow cluster, a
    conflict, throttling (429) or a server error (5xx); never bad input or RBAC."""
    error = state.data
    return isinstance(error, FleetflowError) and error.retryable


CLUSTER_TASK: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [1, 2, 4],
    "retry_condition_fn": retryable,
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "timeout_seconds": 120,
}
"""Options of every task that talks to a cluster. Inputs and results hold blocks and tokens,
which must never be hashed, cached or written to result storage, whatever the profile says."""

PRIVATE: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
"""Options of the other tasks that handle blocks (loading, saving)."""
