"""Probe results -> member health, with hysteresis in counts and in time.

One failed probe never evicts: a member becomes Unhealthy only after ``failure_threshold``
consecutive failed probes spanning at least ``failure_seconds`` (from the first failure of the
streak), and placeable again only after ``success_threshold`` consecutive good ones spanning at
least ``success_seconds``. The counts guard against a single lost probe; the times guard against
a short outage seen by many fast probes (an apiserver restarting, a leader election), so a member
that flaps faster than the thresholds never becomes Unhealthy and its replicas never thrash.

The states move along one cycle::

    Healthy -> Suspect -> Unhealthy -> Recovering -> Healthy
                  |                        |
                  +--> Healthy             +--> Unhealthy      (the streak broke)

(a policy of one probe and no time, which nobody should use, jumps Healthy -> Unhealthy and
Unhealthy -> Healthy directly). A probe is good when the member's API answers and at least one
of its nodes is Ready.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Health(StrEnum):
    HEALTHY = "Healthy"
    SUSPECT = "Suspect"  # failing, not yet long enough to move its replicas
    UNHEALTHY = "Unhealthy"  # its replicas go to the others
    RECOVERING = "Recovering"  # answering again, not yet long enough to get replicas back


class HealthPolicy(BaseModel):
    """When probes move a member between Healthy, Suspect, Unhealthy and Recovering.

    The defaults suit the health watcher's probes every 2 seconds: a stopped apiserver is
    Unhealthy 10-14 s after it stops (the first failed probe, then 10 s more), well inside the
    30 s target, while an apiserver that restarts within 10 s (about 4 s on the test bed) only
    ever makes its member Suspect. A rebalance run without a watcher is one probe per run, its
    runs minutes apart: there the counts alone decide (:meth:`per_run`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_threshold: int = Field(
        default=2, ge=1, description="Consecutive failed probes before a member is Unhealthy"
    )
    failure_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Seconds a member must keep failing, from its first failed probe, before "
        "it is Unhealthy",
    )
    success_threshold: int = Field(
        default=2, ge=1, description="Consecutive good probes before it is Healthy again"
    )
    success_seconds: float = Field(
        default=10.0,
        ge=0,
        description="Seconds it must keep answering, from its first good probe, before it is "
        "Healthy again",
    )

    def per_run(self) -> HealthPolicy:
        """The policy for probes a schedule's interval apart (a rebalance run without a
        watcher): counts only, since minutes already separate any two probes."""
        return self.model_copy(update={"failure_seconds": 0.0, "success_seconds": 0.0})


class HealthState(BaseModel):
    """What the registry remembers between runs (MemberCluster status)."""

    model_config = ConfigDict(frozen=True)

    health: Health = Health.HEALTHY
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    since: datetime | None = None
    """Suspect or Recovering: when the current streak of failures or successes began."""

    @property
    def placeable(self) -> bool:
        """Replicas may be placed (or stay) here: healthy, or failing too briefly to move."""
        return self.health in (Health.HEALTHY, Health.SUSPECT)


def _lasted(since: datetime, now: datetime, seconds: float) -> bool:
    return (now - since).total_seconds() >= seconds


def observe(state: HealthState, ok: bool, policy: HealthPolicy, now: datetime) -> HealthState:
    """The next state after one probe at ``now``.

    Counters and the streak's start run only while they matter (towards a threshold), so a
    member that stays Healthy, or stays Unhealthy, keeps the same state probe after probe and
    nothing is rewritten.
    """
    if ok:
        if state.health in (Health.HEALTHY, Health.SUSPECT):
            return HealthState()
        successes = state.consecutive_successes + 1
        since = state.since if state.health is Health.RECOVERING and state.since else now
        if successes >= policy.success_threshold and _lasted(since, now, policy.success_seconds):
            return HealthState()
        return HealthState(health=Health.RECOVERING, consecutive_successes=successes, since=since)
    if state.health is Health.UNHEALTHY:
        return state
    if state.health is Health.RECOVERING:
        return HealthState(health=Health.UNHEALTHY, consecutive_failures=policy.failure_threshold)
    failures = state.consecutive_failures + 1
    since = state.since if state.health is Health.SUSPECT and state.since else now
    if failures >= policy.failure_threshold and _lasted(since, now, policy.failure_seconds):
        return HealthState(health=Health.UNHEALTHY, consecutive_failures=failures)
    return HealthState(health=Health.SUSPECT, consecutive_failures=failures, since=since)
