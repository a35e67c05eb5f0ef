"""How fleetflow's tasks retry (only on errors the error tree calls retryable), and the options
every task that handles blocks or tokens shares."""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NO_CACHE

from fleetflow.errors import FleetflowError
from fleetflow.settings import settings


def retryable(task: Any, task_run: Any, state: Any) -> bool:
    """Retry exactly what the error tree calls retryable: an unreachable or slow cluster, a
    conflict, throttling (429) or a server error (5xx); never bad input or RBAC."""
    error = state.data
    return isinstance(error, FleetflowError) and error.retryable


PRIVATE: dict[str, Any] = {"cache_policy": NO_CACHE, "persist_result": False}
"""Options of every task that handles blocks or tokens: inputs and results must never be
hashed, cached or written to result storage, whatever the profile says."""

_settings = settings()  # task options are fixed when the tasks are defined, at import

MEMBER_TASK: dict[str, Any] = {
    **PRIVATE,
    "retries": _settings.retries,
    "retry_delay_seconds": _settings.retry_delays,
    "retry_condition_fn": retryable,
}
"""Options of tasks mapped over members. They run in worker threads, where a task timeout
cannot interrupt; their requests carry timeouts and their waits deadlines instead."""

CLUSTER_TASK: dict[str, Any] = {**MEMBER_TASK, "timeout_seconds": _settings.task_timeout}
"""Options of every other task that talks to a cluster."""
