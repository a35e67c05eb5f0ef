"""Plan a rebalance: for each federated workload, which members run how many replicas. Pure.

Inputs are what the flow observed (the registry, each member's health, free capacity and the
Deployments fleetflow put there); the output is what to write. Replicas move off a member only
when the health model says it is unhealthy; replicas return to a recovered member at most
``max_moves`` per workload per run, so a flapping member cannot cause thrash.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from fleetflow.autoscaling import Autoscaler, Budget, Share, divide
from fleetflow.capacity import Resources, replicas_that_fit
from fleetflow.controlplane import Manifest
from fleetflow.errors import PlacementError
from fleetflow.federated import FederatedDeployment, override_problem
from fleetflow.health import HealthState
from fleetflow.lease import Lease
from fleetflow.objects import FederatedObjects
from fleetflow.placement import Candidate, Plan
from fleetflow.registry import MemberCluster
from fleetflow.scheduling import Scheduled, Taint, applies, schedule


class Observed(BaseModel):
    """One of our workloads (a Deployment or a StatefulSet) as a member runs it."""

    kind: str = "Deployment"
    replicas: int
    ready: int = 0
    spec_hash: str = ""


class MemberObservation(BaseModel):
    """What one probe of a member saw."""

    name: str
    reachable: bool
    error: str | None = None
    nodes_ready: int = 0
    nodes_total: int = 0
    allocatable: Resources | None = None  # of the Ready nodes
    free: Resources | None = None
    deployments: dict[str, Observed] = Field(default_factory=dict)
    autoscalers: dict[str, Autoscaler] = Field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A good probe: the API answers and at least one node is Ready."""
        return self.reachable and self.nodes_ready > 0

    def summary(self) -> str:
        return self.error or f"{self.nodes_ready} nodes Ready"


class MemberView(BaseModel):
    """A member as this run sees it."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    fenced: bool = False
    taints: list[Taint] = Field(default_factory=list)
    health: HealthState = Field(default_factory=HealthState)
    reachable: bool = True
    free: Resources | None = None
    deployments: dict[str, Observed] = Field(default_factory=dict)  # by namespace/name
    autoscalers: dict[str, Autoscaler] = Field(default_factory=dict)  # by namespace/name


class WorkloadPlan(BaseModel):
    """What one federated workload should become."""

    key: str
    replicas: dict[str, int] = Field(default_factory=dict)
    current: dict[str, int] = Field(default_factory=dict)
    ready: dict[str, int] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)
    unplaced: int = 0
    remove_from: list[str] = Field(default_factory=list)
    error: str | None = None
    deleting: bool = False
    blocked_by: list[str] = Field(default_factory=list)
    """Deleting: unreachable members that may still run the workload; its deletion waits."""
    held: str | None = None
    """Why this run leaves the workload as it runs (a migration holds it, or the run's filter
    names others)."""
    budget: Budget | None = None
    """An autoscaled workload's division: each member's HPA min and max, and the moves made.
    Its ``replicas`` are then what the members' HPAs set (or where a new member starts)."""
    autoscaler_desired: dict[str, int] = Field(default_factory=dict)
    """What each member's HPA last asked for (its ``desiredReplicas``)."""
    notes: list[str] = Field(default_factory=list)
    """What scheduling decided for the whole workload: the affinity group in use (and why the
    ones before it were passed over), the spread it covers."""


def select(fd: FederatedDeployment, members: dict[str, MemberView]) -> list[str]:
    """The members a workload's placement selects; unknown names and empty matches are errors."""
    placement = fd.spec.placement
    known = sorted(members)
    if placement.clusters is not None:
        unknown = sorted(set(placement.clusters) - set(members))
        if unknown:
            raise PlacementError(
                f"{fd.key}: placement names unknown cluster(s) {', '.join(unknown)}; "
                f"members are {', '.join(known) or 'none'}"
            )
        chosen = sorted(set(placement.clusters))
    else:
        chosen = known
    if placement.cluster_selector is not None:
        selector = placement.cluster_selector
        chosen = [m for m in chosen if selector.miss(members[m].labels) is None]
    if not chosen:
        raise PlacementError(
            f"{fd.key}: the placement selects no member cluster; members are "
            f"{', '.join(known) or 'none'} (check clusters and clusterSelector)"
        )
    unknown = sorted(set(placement.weights) - set(members))
    if unknown:
        raise PlacementError(f"{fd.key}: weights name unknown cluster(s) {', '.join(unknown)}")
    return chosen


def limit_moves(
    current: dict[str, int], desired: dict[str, int], placeable: set[str], max_moves: int | None
) -> dict[str, int]:
    """Step from ``current`` towards ``desired`` moving at most ``max_moves`` replicas between
    placeable members. Replicas owed by a change of total or by an unplaceable member are placed
    at once; only moves that take replicas from one healthy member to another are limited."""
    if max_moves is None:
        return dict(desired)
    step = {c: (current.get(c, 0) if c in placeable else 0) for c in desired}
    change = sum(desired.values()) - sum(step.values())
    gaps = sorted(desired, key=lambda c: (-(desired[c] - step[c]), c))
    surplus = sorted(desired, key=lambda c: (-(step[c] - desired[c]), c))
    for c in gaps if change > 0 else surplus:  # owed replicas: no limit
        move = min(abs(change), abs(desired[c] - step[c]))
        if change > 0 and desired[c] > step[c]:
            step[c], change = step[c] + move, change - move
        elif change < 0 and step[c] > desired[c]:
            step[c], change = step[c] - move, change + move
    budget = max_moves
    for taker in [c for c in gaps if desired[c] > step[c]]:
        for giver in [c for c in surplus if step[c] > desired[c]]:
            move = min(budget, desired[taker] - step[taker], step[giver] - desired[giver])
            step[taker] += move
            step[giver] -= move
            budget -= move
    return step


def plan_workload(
    fd: FederatedDeployment,
    members: dict[str, MemberView],
    max_moves: int | None = None,
    *,
    capped: bool = False,
    hold: str | None = None,
) -> WorkloadPlan:
    """Plan one workload; a bad placement becomes ``error`` and plans nothing. A workload being
    deleted is removed from every member that runs it (unless it asked to orphan them).
    ``capped``: every member's free room caps what it gets, whatever the placement's mode.
    ``hold``: why this run leaves it as it runs (so does a migration holding it)."""
    plan = WorkloadPlan(key=fd.key)
    current = {
        m: v.deployments[fd.key].replicas for m, v in members.items() if fd.key in v.deployments
    }
    for entry in fd.status.clusters:  # last known, for members we cannot see now
        if entry.name in members and not members[entry.name].reachable:
            current.setdefault(entry.name, entry.desired)
    plan.current = current
    plan.ready = {
        m: v.deployments[fd.key].ready for m, v in members.items() if fd.key in v.deployments
    }
    if fd.deleting and not hold:
        return plan_deletion(fd, plan, members)
    if hold or fd.migration:
        plan.held = hold or f"being migrated (operation {fd.migration}): left as it runs"
        plan.replicas = dict(current)
        plan.reasons = {m: plan.held for m in current}
        return plan
    if problem := override_problem(fd):
        plan.error = problem
        return plan
    try:
        scheduled = _scheduled(fd, members, current, capped=capped)
        candidates, result = scheduled.candidates, scheduled.plan
        plan.notes = list(scheduled.notes)
        if fd.spec.autoscaling is not None:
            return _autoscaled(fd, plan, members, scheduled)
    except PlacementError as exc:
        plan.error = str(exc)
        return plan
    placeable = {c.name for c in candidates if c.healthy and not c.fenced}
    plan.replicas = limit_moves(current, result.replicas, placeable, max_moves)
    plan.reasons = dict(result.reasons)
    for name in placeable:
        if not members[name].reachable:
            plan.reasons[name] = (
                f"not answering: keeps the {current.get(name, 0)} it ran when last seen, "
                "gains none until it answers"
            )
    for name, count in plan.replicas.items():
        if count != result.replicas[name]:
            plan.reasons[name] = f"{plan.reasons[name]} (moving: max_moves reached)"
    plan.unplaced = result.unplaced
    plan.remove_from = sorted(m for m in current if m not in plan.replicas and m in members)
    return _keep_unplaced(plan, members)


def _keep_unplaced(plan: WorkloadPlan, members: dict[str, MemberView]) -> WorkloadPlan:
    """Make-before-break for replicas no member can take: an unhealthy member keeps, of what it
    runs, as many as are unplaced, until another member has room (seen on make up: a rotated
    token made every member look unhealthy, and a rebalance stopped every replica, started
    none and deleted an autoscaled workload). A fenced member keeps nothing: a fence is an
    order to evacuate. Of an autoscaled workload, such a member keeps its HPA (its max cut to
    the budget left unplaced)."""
    left = plan.unplaced
    for name in sorted(plan.current, key=lambda m: (-plan.current[m], m)):
        view, running = members.get(name), plan.current[name]
        if left <= 0 or view is None or view.fenced or view.health.placeable or not running:
            continue
        keep = min(running, left)
        if plan.budget is not None:
            hpa = view.autoscalers.get(plan.key)
            if name not in plan.remove_from or hpa is None:
                continue  # it holds a share, or it has no HPA to keep
            keep = min(hpa.max, left)
            plan.budget.shares[name] = Share(min(hpa.min, keep), keep, running)
            plan.remove_from.remove(name)
        elif keep <= plan.replicas.get(name, 0):
            continue
        plan.replicas[name] = min(running, keep)
        plan.reasons[name] = (
            f"{view.health.health.value.lower()}: keeps {plan.replicas[name]} no other member "
            "can take now (they move once one can)"
        )
        left -= keep
    plan.unplaced = max(left, 0)
    return plan


def _scheduled(
    fd: FederatedDeployment,
    members: dict[str, MemberView],
    current: dict[str, int],
    *,
    capped: bool,
) -> Scheduled:
    """The workload's candidates as its scheduling rules leave them, and the plan over them.
    An autoscaled workload is scheduled for its ``maxReplicas``: the group and spread that can
    hold all of its budget."""
    auto, rules = fd.spec.autoscaling, fd.spec.placement.rules()
    candidates = _candidates(fd, members, current, capped=capped)
    if auto is not None and not applies(rules, candidates, members):
        return Scheduled(candidates, Plan(replicas={}, reasons={}))  # the division plans it
    return schedule(
        auto.max_replicas if auto else fd.spec.replicas,
        candidates,
        members,
        rules,
        capacity_aware=fd.spec.placement.mode == "Capacity",
        workload=fd.key,
    )


def _candidates(
    fd: FederatedDeployment,
    members: dict[str, MemberView],
    current: dict[str, int],
    *,
    capped: bool,
) -> list[Candidate]:
    """The members a workload's placement selects, as the planner reads them."""
    placement = fd.spec.placement
    per_replica = fd.per_replica()
    candidates = []
    for name in select(fd, members):
        view = members[name]
        capacity = None
        if (capped or placement.mode == "Capacity") and view.free is not None:
            capacity = replicas_that_fit(view.free, per_replica) + current.get(name, 0)
        low, high = placement.min.get(name, 0), placement.max.get(name)
        if not view.reachable:
            # Make-before-break: replicas given to a member this run cannot write would be
            # taken from the others at once and started nowhere. It keeps what it ran when
            # last seen (its health decides when those move) and gains nothing until it answers.
            held = current.get(name, 0)
            low, high = min(low, held), held if high is None else min(high, held)
        candidates.append(
            Candidate(
                name=name,
                weight=placement.weights.get(name, 0 if placement.weights else 1),
                min=low,
                max=high,
                capacity=capacity,
                healthy=view.health.placeable,
                fenced=view.fenced,
                current=current.get(name, 0),
            )
        )
    return candidates


def _autoscaled(
    fd: FederatedDeployment,
    plan: WorkloadPlan,
    members: dict[str, MemberView],
    scheduled: Scheduled,
) -> WorkloadPlan:
    """An autoscaled workload: its budget divided over the members (``fleetflow.autoscaling``);
    a member runs what its HPA sets, a new one starts at its share of ``spec.replicas``."""
    assert fd.spec.autoscaling is not None
    seen = {m: v.autoscalers[fd.key] for m, v in members.items() if fd.key in v.autoscalers}
    for entry in fd.status.clusters:  # last known, for members we cannot see now
        view = members.get(entry.name)
        if view is not None and not view.reachable and entry.max_replicas:
            seen.setdefault(
                entry.name,
                Autoscaler(
                    min=entry.min_replicas or 1,
                    max=entry.max_replicas,
                    current=entry.desired,
                    desired=entry.desired,
                    wanted=entry.desired,
                    known=False,
                ),
            )
    recorded = {e.name: e.max_replicas for e in fd.status.clusters if e.max_replicas}
    budget = divide(
        fd.spec.autoscaling.budget(),
        scheduled.candidates,
        seen,
        workload=fd.key,
        replicas=fd.spec.replicas,
        running=plan.current,
        recorded=recorded,
    )
    plan.budget = budget
    plan.autoscaler_desired = {m: a.desired for m, a in seen.items() if a.active}
    plan.replicas = {
        m: min(max(plan.current.get(m, share.start), share.min), share.max)
        for m, share in budget.shares.items()
    }
    plan.reasons = {
        m: _budget_reason(m, why, budget, scheduled) for m, why in budget.reasons.items()
    }
    plan.unplaced = budget.unplaced
    plan.remove_from = sorted(m for m in plan.current if m not in plan.replicas and m in members)
    return _keep_unplaced(plan, members)


def _budget_reason(member: str, why: str, budget: Budget, scheduled: Scheduled) -> str:
    """A member with budget: the division's reason; one without: why the rules leave it out."""
    share = budget.shares.get(member)
    return why if share is not None and share.max else scheduled.plan.reasons.get(member, why)


def plan_deletion(
    fd: FederatedDeployment, plan: WorkloadPlan, members: dict[str, MemberView]
) -> WorkloadPlan:
    """Remove the workload from the members that run it. A member that cannot be reached now
    but ran it when last seen holds the deletion until it answers (or is unjoined), so that
    no copy is left running for ever."""
    plan.deleting = True
    if fd.orphan:
        return plan
    plan.remove_from = sorted(m for m in plan.current if members[m].reachable)
    plan.blocked_by = sorted(m for m in plan.current if not members[m].reachable)
    return plan


class HostView(BaseModel):
    """Everything a rebalance reads from the host, read in one step: what is federated, who the
    members are, whether the health watcher runs, and the DNS records traffic follows."""

    workloads: list[FederatedDeployment]
    objects: FederatedObjects
    unassigned: list[str]
    """Federated workloads and objects that name no federation (reported, never propagated)."""
    members: list[MemberCluster]
    watch_lease: Lease | None
    endpoints: dict[str, Manifest]
    """The federation's DNSEndpoints, by namespace/name."""
