"""How fleetflow's tasks retry: only on errors that a retry can fix."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from fleetflow.kube import ClusterTimeout, ClusterUnreachable, ResourceConflict
from fleetflow.kube.errors import ClusterError

TRANSIENT = (ClusterUnreachable, ClusterTimeout, ResourceConflict)


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry an unreachable or slow cluster, a conflict, a 429 (an apiserver still starting up,
    or throttling) or a 5xx; never bad input or RBAC."""
    error = state.data
    if isinstance(error, TRANSIENT):
        return True
    status = error.status or 0 if isinstance(error, ClusterError) else 0
    return status == 429 or status >= 500


CLUSTER_TASK: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [1, 2, 4],
    "retry_condition_fn": transient,
    "cache_policy": NO_CACHE,
    "persist_result": False,
    "timeout_seconds": 120,
}
"""Options of every task that talks to a cluster. Inputs and results hold blocks and tokens,
which must never be hashed, cached or written to result storage, whatever the profile says."""

PRIVATE: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
"""Options of the other tasks that handle blocks (loading, saving)."""
