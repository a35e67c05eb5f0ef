"""Regional failover and failback: what to evacuate, where replicas go, what must hold. Pure.

Failover is make-before-break: survivors scale up and turn Ready before traffic moves, and only
then is the evacuated region scaled down. At no moment may a workload's Ready replicas across the
federation fall below what it had minus what the evacuated members held (its *floor*).
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, Field

from fleetflow.capacity import Resources
from fleetflow.controlplane import Manifest
from fleetflow.errors import InvalidRequest, UnknownName
from fleetflow.failpoints import declare
from fleetflow.federated import FederatedDeployment
from fleetflow.operations import Operation, Phase
from fleetflow.rebalance import MemberView, WorkloadPlan, plan_workload
from fleetflow.registry import MemberCluster
from fleetflow.snapshot import Snapshot
from fleetflow.traffic import endpoints
from fleetflow.writes import MemberWork, WritePlan, plan_objects, write_plan

STEPS = declare("failover", ("fenced", "scaled-up", "ready", "traffic-switched", "drained"))
"""The failover's phases, in order, as its operation record names them."""


class Evacuation(BaseModel):
    """The members a failover empties, and the ones left to carry the load."""

    region: str | None
    members: list[str]
    survivors: list[str]

    @property
    def operation_name(self) -> str:
        """One record per target: a second request for the same region finds the first."""
        if self.region:
            return f"failover-{self.region}"
        digest = hashlib.sha256(",".join(self.members).encode()).hexdigest()[:8]
        return f"failover-members-{digest}"


def evacuation(registry: list[MemberCluster], region: str | None, members: list[str]) -> Evacuation:
    """Check what is to be evacuated against the registry; raise before anything is written."""
    known = {m.name: m for m in registry}
    regions = sorted({m.spec.region for m in registry if m.spec.region})
    if bool(region) == bool(members):
        raise InvalidRequest("give a region to evacuate, or members, not both and not neither")
    if region:
        chosen = sorted(m.name for m in registry if m.spec.region == region)
        if not chosen:
            raise UnknownName(
                f"no member is in region {region!r}; regions: {', '.join(regions) or 'none'}"
            )
    else:
        unknown = sorted(set(members) - set(known))
        if unknown:
            raise UnknownName(
                f"unknown member(s) {', '.join(unknown)}; members: {', '.join(sorted(known))}"
            )
        chosen = sorted(set(members))
    survivors = sorted(set(known) - set(chosen))
    if not survivors:
        raise InvalidRequest(
            f"evacuating {', '.join(chosen)} leaves no member to run the workloads: "
            "fail over a smaller part of the federation"
        )
    return Evacuation(region=region, members=chosen, survivors=survivors)


def ended_by_failback(records: list[Operation], members: list[str]) -> list[Operation]:
    """The failover records a failback of ``members`` ends: each one not reverted yet whose
    evacuated members it unfences, whatever each was named for (a failback by members ends a
    failover by region, and the other way round). Once the fence is lifted such a record must
    not say Succeeded: the next failover would answer "already evacuated" and do nothing."""
    lifted = set(members)
    return [
        op
        for op in records
        if op.procedure == "failover"
        and op.status.phase not in (None, Phase.REVERTED)
        and lifted & set(op.parameters.get("members") or [])
    ]


def fence(members: dict[str, MemberView], evacuated: list[str]) -> dict[str, MemberView]:
    """The members as placement must see them during a failover: the evacuated ones fenced."""
    return {
        name: view.model_copy(update={"fenced": view.fenced or name in evacuated})
        for name, view in members.items()
    }


class Outcome(BaseModel):
    """What a failover leaves unserved, kept on its record (``status.result``) for a drill's
    verdict."""

    unplaced: dict[str, int] = Field(default_factory=dict)
    stranded: list[str] = Field(default_factory=list)
    """Workloads the survivors cannot run at all (pinned to the region, or no room anywhere):
    while the region is away they serve nothing. A drill fails on them."""
    held: dict[str, list[str]] = Field(default_factory=dict)
    """Held workloads (a migration holds them as they run) left on evacuated members, by
    workload: they keep running there, and their DNS answers there while nothing else serves
    them (``traffic.serving``)."""

    @classmethod
    def recorded(cls, result: dict[str, Any]) -> Outcome | None:
        """As a failover's record holds it; None when its drain never ran (nothing kept)."""
        return cls.model_validate(result) if "stranded" in result else None

    def notes(self) -> list[str]:
        return [
            *(
                f"{k}: {n} replicas could not be placed"
                + (": none left to serve while the region is away" if k in self.stranded else "")
                for k, n in self.unplaced.items()
            ),
            *(
                f"{k}: held by a migration, kept on {', '.join(m)} (fenced): its DNS answers "
                "there while no other member serves it"
                for k, m in self.held.items()
            ),
        ]


class FailoverPlan(Outcome):
    plans: dict[str, WorkloadPlan] = Field(default_factory=dict)
    floors: dict[str, int] = Field(default_factory=dict)

    def outcome(self) -> Outcome:
        """What the failover keeps on its record."""
        return Outcome.model_validate(self.model_dump(include=set(Outcome.model_fields)))


def plan_failover(
    workloads: list[FederatedDeployment], members: dict[str, MemberView], evacuated: list[str]
) -> FailoverPlan:
    """Plan every workload over the survivors, each capped by the room left after the ones
    before it, so that the region's replicas spread instead of piling onto one member; what
    does not fit is reported as unplaced, never dropped."""
    views = fence(members, evacuated)
    result = FailoverPlan()
    for fd in sorted(workloads, key=lambda w: w.key):
        if fd.deleting:
            continue
        plan = plan_workload(fd, views, max_moves=None, capped=True)
        result.plans[fd.key] = plan
        result.floors[fd.key] = floor(plan, evacuated)
        if plan.held and (kept := [m for m in evacuated if plan.replicas.get(m)]):
            result.held[fd.key] = kept
        if plan.unplaced:
            result.unplaced[fd.key] = plan.unplaced
            if not any(n for m, n in plan.replicas.items() if m not in evacuated):
                result.stranded.append(fd.key)
        views = _take_room(views, fd, plan)
    return result


def floor(plan: WorkloadPlan, evacuated: list[str]) -> int:
    """Ready replicas the workload must keep throughout: all of them but the evacuated ones'."""
    return sum(n for m, n in plan.ready.items() if m not in evacuated)


def _take_room(
    views: dict[str, MemberView], fd: FederatedDeployment, plan: WorkloadPlan
) -> dict[str, MemberView]:
    per = fd.per_replica()
    out = dict(views)
    for member, want in plan.replicas.items():
        added = max(0, want - plan.current.get(member, 0))
        view = out[member]
        if added and view.free is not None:
            used = Resources(cpu=per.cpu * added, memory=per.memory * added, pods=added)
            out[member] = view.model_copy(update={"free": view.free - used})
    return out


def below_floor(floors: dict[str, int], ready: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Workloads whose Ready replicas (across the federation) are under their floor."""
    return {k: (ready.get(k, 0), f) for k, f in floors.items() if ready.get(k, 0) < f}


def as_if_ready(plans: dict[str, WorkloadPlan]) -> dict[str, WorkloadPlan]:
    """The plans with every planned replica counted Ready: what traffic will look like once
    the failover has done its work (used to check, before any write, that it can be routed)."""
    return {k: p.model_copy(update={"ready": dict(p.replicas)}) for k, p in plans.items()}


class FailoverDecision(BaseModel):
    """Everything a failover will write, decided before its first write: which members it
    fences, what the survivors get (their replicas and the objects those need), what the
    evacuated members lose, and the DNS it switches to once the survivors are Ready."""

    target: Evacuation
    plan: FailoverPlan
    fence: list[MemberCluster]
    members: dict[str, MemberView]
    """As probed, unfenced: the writes go to members as they are."""
    views: dict[str, MemberView]
    """As placement sees them during the failover: the evacuated ones fenced."""
    needs: dict[str, MemberWork]
    writes: WritePlan
    unexposed: list[str]
    workloads: list[FederatedDeployment]
    ingress: dict[str, str | None]
    zone: str
    federation: str

    def traffic(self, plans: dict[str, WorkloadPlan]) -> list[Manifest]:
        """Each exposed workload's DNSEndpoint listing the members whose replicas ``plans``
        count Ready."""
        found, _ = endpoints(
            self.workloads, plans, self.views, self.ingress, self.zone, self.federation
        )
        return found

    def planned_traffic(self) -> list[Manifest]:
        """The DNS once every planned replica is Ready (what a dry run says it would write)."""
        return self.traffic(as_if_ready(self.plan.plans))


def decide_failover(
    target: Evacuation, seen: Snapshot, *, federation: str, zone: str
) -> FailoverDecision:
    """The failover of ``target`` over the members as probed. Pure.

    What the survivors' new replicas need (ConfigMaps, Secrets...) goes with them; what the
    region no longer needs stays until a rebalance after the failover takes it away. A workload
    whose DNS could not be written once it moves is in ``unexposed``: the flow refuses before
    any write."""
    registry, members = seen.view.members, seen.found.members
    workloads, objects = seen.view.workloads, seen.view.objects
    plan = plan_failover(workloads, members, target.members)
    views = fence(members, target.members)
    joined = {m.name: m.namespaces for m in registry}
    invalid = [o.key for o in objects.invalid]
    needs = plan_objects(objects.valid, invalid, workloads, plan.plans, views, joined, federation)
    ingress = {m.name: m.spec.ingress_address for m in registry}
    _, unexposed = endpoints(workloads, as_if_ready(plan.plans), views, ingress, zone, federation)
    return FailoverDecision(
        target=target,
        plan=plan,
        fence=[m for m in registry if m.name in target.members],
        members=members,
        views=views,
        needs=needs.work,
        writes=write_plan(workloads, plan.plans, members, federation),
        unexposed=unexposed,
        workloads=workloads,
        ingress=ingress,
        zone=zone,
        federation=federation,
    )
