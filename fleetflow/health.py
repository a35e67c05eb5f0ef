"""Probe results -> member health, with hysteresis.

One failed probe never evicts: a member becomes Unhealthy only after ``failure_threshold``
consecutive failed probes, and placeable again only after ``success_threshold`` consecutive good
ones, so a flapping member cannot make replicas thrash. A probe is good when the member's API
answers and at least one of its nodes is Ready.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Health(StrEnum):
    HEALTHY = "Healthy"
    SUSPECT = "Suspect"  # failing, not yet long enough to move its replicas
    UNHEALTHY = "Unhealthy"  # its replicas go to the others
    RECOVERING = "Recovering"  # answering again, not yet long enough to get replicas back


class HealthPolicy(BaseModel):
    """When probes move a member between Healthy, Suspect, Unhealthy and Recovering."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(
        default=2, ge=1, description="Consecutive failed probes before a member is Unhealthy"
    )
    success_threshold: int = Field(
        default=2, ge=1, description="Consecutive good probes before it is Healthy again"
    )


class HealthState(BaseModel):
    """What the registry remembers between runs (MemberCluster status)."""

    model_config = ConfigDict(frozen=True)

    health: Health = Health.HEALTHY
    consecutive_failures: int = 0
    consecutive_successes: int = 0

    @property
    def placeable(self) -> bool:
        """Replicas may be placed (or stay) here: healthy, or failing too briefly to move."""
        return self.health in (Health.HEALTHY, Health.SUSPECT)


def observe(state: HealthState, ok: bool, policy: HealthPolicy) -> HealthState:
    """The next state after one probe.

    Counters run only while they matter (towards a threshold), so a member that stays Healthy,
    or stays Unhealthy, keeps the same state run after run and nothing is rewritten.
    """
    if ok:
        if state.health in (Health.HEALTHY, Health.SUSPECT):
            return HealthState()
        successes = state.consecutive_successes + 1
        if successes >= policy.success_threshold:
            return HealthState()
        return HealthState(health=Health.RECOVERING, consecutive_successes=successes)
    if state.health in (Health.UNHEALTHY, Health.RECOVERING):
        return HealthState(health=Health.UNHEALTHY, consecutive_failures=policy.failure_threshold)
    failures = state.consecutive_failures + 1
    if failures >= policy.failure_threshold:
        return HealthState(health=Health.UNHEALTHY, consecutive_failures=failures)
    return HealthState(health=Health.SUSPECT, consecutive_failures=failures)
