"""What a rebalance writes, where, and in what order. Pure.

Make-before-break: growth, new and changed Deployments are written first (``ups``); once they
are Ready, shrinking and removal follow (``downs``). A Deployment already as planned gets no
request at all. Deleted workloads leave their members in the first phase: nothing is waiting
on them.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, Field

from fleetflow.controlplane import Manifest
from fleetflow.federated import (
    ANNOTATION_HASH,
    ClusterPlacement,
    FederatedDeployment,
    FederatedDeploymentStatus,
    member_deployment,
)
from fleetflow.rebalance import MemberView, WorkloadPlan
from fleetflow.wire import Condition


class MemberWrites(BaseModel):
    """One member's share of a phase: Deployments to apply, workloads (namespace/name) to
    remove."""

    apply: list[Manifest] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.apply and not self.remove

    def applied_keys(self) -> list[str]:
        return [f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in self.apply]


class WritePlan(BaseModel):
    """Both phases, by member; members with nothing to do are left out."""

    ups: dict[str, MemberWrites] = Field(default_factory=dict)
    downs: dict[str, MemberWrites] = Field(default_factory=dict)


def write_plan(
    workloads: Iterable[FederatedDeployment],
    plans: dict[str, WorkloadPlan],
    members: dict[str, MemberView],
    federation: str,
) -> WritePlan:
    """Per reachable member: what to apply first and what after."""
    reachable = {m for m, v in members.items() if v.reachable}
    ups: dict[str, MemberWrites] = {m: MemberWrites() for m in reachable}
    downs: dict[str, MemberWrites] = {m: MemberWrites() for m in reachable}
    for fd in workloads:
        plan = plans.get(fd.key)
        if plan is None or plan.error:  # not planned (a failover skips deleted ones) or invalid
            continue
        for member, replicas in plan.replicas.items():
            if member not in reachable:
                continue
            manifest = member_deployment(fd, member, replicas, federation)
            live = members[member].deployments.get(fd.key)
            digest = manifest["metadata"]["annotations"][ANNOTATION_HASH]
            if live is not None and live.spec_hash == digest and live.replicas == replicas:
                continue
            shrink = live is not None and replicas < live.replicas
            (downs if shrink else ups)[member].apply.append(manifest)
        for member in plan.remove_from:
            if member in reachable:
                (ups if plan.deleting else downs)[member].remove.append(fd.key)
    return WritePlan(
        ups={m: w for m, w in sorted(ups.items()) if not w.empty},
        downs={m: w for m, w in sorted(downs.items()) if not w.empty},
    )


class Readiness(BaseModel):
    """Ready replicas of our Deployments in one member, and those still not ready."""

    ready: dict[str, int] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)


def with_readiness(
    plans: dict[str, WorkloadPlan], readiness: dict[str, Readiness]
) -> dict[str, WorkloadPlan]:
    """The plans with the ready counts seen after the scale-ups (new copies; the inputs are
    left as they were)."""
    updated = {}
    for key, plan in plans.items():
        ready = dict(plan.ready)
        for member, seen in readiness.items():
            if key in seen.ready and member in plan.replicas:
                ready[member] = seen.ready[key]
        updated[key] = plan.model_copy(update={"ready": ready})
    return updated


def held_back(readiness: dict[str, Readiness], timeout: float) -> list[str]:
    """Why scale-downs must wait, one line per member whose scale-ups are not Ready yet;
    empty when it is safe to take replicas away."""
    return [
        f"{member}: not ready after {timeout:g}s: {', '.join(seen.pending)}; scale-downs held back"
        for member, seen in sorted(readiness.items())
        if seen.pending
    ]


def workload_status(fd: FederatedDeployment, plan: WorkloadPlan) -> FederatedDeployment | None:
    """The workload with its new status, or None when the status would not change. An invalid
    placement keeps the last good placement in the status and says why in the condition."""
    if plan.deleting:
        if not plan.blocked_by:
            return None
        condition = Condition(
            type="Deleting",
            status="True",
            reason="WaitingForMembers",
            message=f"unreachable members may still run it: {', '.join(plan.blocked_by)}",
        )
        status = fd.status.model_copy(update={"conditions": [condition]})
    elif plan.error:
        condition = Condition(type="Planned", status="False", reason="Invalid", message=plan.error)
        status = fd.status.model_copy(
            update={"observed_generation": fd.generation, "conditions": [condition]}
        )
    else:
        status = FederatedDeploymentStatus(
            observed_generation=fd.generation,
            clusters=[
                ClusterPlacement(name=c, desired=n, ready=plan.ready.get(c, 0))
                for c, n in sorted(plan.replicas.items())
            ],
            unplaced=plan.unplaced,
            conditions=[Condition(type="Planned", status="True", reason="Placed")],
        )
    return None if status == fd.status else fd.model_copy(update={"status": status})


def to_protect(workloads: Iterable[FederatedDeployment]) -> list[FederatedDeployment]:
    """Workloads that need our finalizer before anything is propagated for them."""
    return [fd for fd in workloads if not fd.deleting and not fd.protected]


def to_release(
    workloads: Iterable[FederatedDeployment],
    plans: dict[str, WorkloadPlan],
    failed: Iterable[str],
) -> list[FederatedDeployment]:
    """Deleted workloads whose members are clean: every removal went through (no member in
    ``failed``) and no unreachable member may still run them."""
    failed = set(failed)
    return [
        fd
        for fd in workloads
        if fd.deleting
        and fd.protected
        and not plans[fd.key].blocked_by
        and not failed & set(plans[fd.key].remove_from)
    ]


def ready_keys(plans: dict[str, WorkloadPlan], members: list[str]) -> dict[str, list[str]]:
    """Per member, the workloads planned to run there: what must be Ready before traffic or
    replicas are taken away anywhere else."""
    return {
        m: sorted(k for k, p in plans.items() if not p.error and p.replicas.get(m, 0) > 0)
        for m in members
    }
