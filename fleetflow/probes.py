"""From what the probes saw to what the registry should say and what placement may use. Pure.

Each member's health moves with hysteresis (:func:`fleetflow.health.observe`); its registry
status is rewritten only when something in it changed, so a quiet federation sends no write.

This is the view of a procedure that probes once per run (rebalance, failover). While a health
watcher runs (:mod:`fleetflow.watch`), it owns the members' health and status: such a run takes
the health the watcher wrote to the registry as it is and writes no member status.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fleetflow.health import HealthPolicy, observe
from fleetflow.rebalance import MemberObservation, MemberView
from fleetflow.registry import MemberCluster, MemberStatus, with_health, with_nodes


class Assessment(BaseModel):
    """The members as placement sees them, and the registry entries whose status changed."""

    members: dict[str, MemberView] = Field(default_factory=dict)
    changed: list[MemberCluster] = Field(default_factory=list)
    transitions: list[str] = Field(default_factory=list)


def observed_status(
    member: MemberCluster, seen: MemberObservation, policy: HealthPolicy, now: datetime
) -> MemberStatus:
    """The member's next status: its health after this probe and, when it answered, its nodes
    and allocatable capacity (an unreachable member keeps what was last seen)."""
    status = with_health(member.status, observe(member.health, seen.ok, policy, now), now)
    if seen.reachable and seen.allocatable is not None:
        status = with_nodes(status, seen.nodes_ready, seen.nodes_total, seen.allocatable)
    return status


def assess(
    registry: list[MemberCluster],
    seen: dict[str, MemberObservation],
    policy: HealthPolicy,
    now: datetime,
    *,
    watched: bool = False,
) -> Assessment:
    """Turn one round of probes into member views, status updates and readable transitions.

    A run's probes are a schedule's interval apart, so the policy's counts decide and not its
    times (:meth:`HealthPolicy.per_run`). ``watched``: a health watcher holds the federation's
    lease, so the registry's health is taken as it is, with no second hysteresis and no member
    status to write.
    """
    result = Assessment()
    for member in registry:
        obs = seen.get(member.name) or MemberObservation(
            name=member.name, reachable=False, error="not probed"
        )
        status = member.status if watched else observed_status(member, obs, policy.per_run(), now)
        if status != member.status:
            result.changed.append(member.model_copy(update={"status": status}))
        updated = member.model_copy(update={"status": status})
        before, after = member.health.health, updated.health.health
        if after != before:
            result.transitions.append(
                f"member {member.name}: {before.value} -> {after.value} ({obs.summary()})"
            )
        result.members[member.name] = MemberView(
            name=member.name,
            labels=member.labels,
            fenced=member.fenced,
            taints=member.taints,
            health=updated.health,
            reachable=obs.reachable,
            free=obs.free,
            deployments=obs.deployments,
            autoscalers=obs.autoscalers,
        )
    return result
