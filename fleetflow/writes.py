"""What a rebalance writes, where, and in what order. Pure.

Make-before-break: growth, new and changed workloads are written first (``ups``); once they
are Ready, shrinking and removal follow (``downs``). A workload already as planned gets no
request at all. Deleted workloads leave their members in the first phase: nothing is waiting
on them.

FederatedObjects ride the same two phases, one task per member in each: in the first, what
the workloads need (ServiceAccounts, Secrets, ConfigMaps, claims, Services) is written before
the workloads, and what needs them (Ingresses, Jobs) after; in the second, after the
workloads' own scale-downs and removals, objects no longer placed there are removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import BaseModel, Field

from fleetflow.autoscaling import Budget, BudgetMove
from fleetflow.controlplane import Manifest
from fleetflow.errors import InvalidRequest
from fleetflow.federated import (
    ANNOTATION_HASH,
    ClusterPlacement,
    FederatedDeployment,
    FederatedDeploymentStatus,
    member_autoscaler,
)
from fleetflow.models import Action
from fleetflow.objects import (
    FederatedObject,
    FederatedObjectStatus,
    MemberObjectStatus,
    MemberState,
    group_of,
    member_object,
)
from fleetflow.propagation import (
    DependencyGraph,
    Desired,
    MemberPass,
    ObjectKey,
    Placements,
    deletion_blocked_by,
    dependency_graph,
    member_statuses,
    member_workload,
    placed_on,
    to_hold,
    workload_deps,
)
from fleetflow.rebalance import MemberView, WorkloadPlan
from fleetflow.wire import Condition


class MemberWrites(BaseModel):
    """One member's share of a phase: workloads (Deployments, StatefulSets) to apply, workloads
    (namespace/name, of the kind the member runs) to remove, and the HPAs of autoscaled ones.

    In a member, HPAs go first (``unscale``: an HPA deleted before its workload's count is set
    again), then the workloads, then ``autoscalers`` (an HPA scales what exists), then
    removals."""

    apply: list[Manifest] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)
    seeds: dict[str, int] = Field(default_factory=dict)
    """Autoscaled workloads among ``apply`` (namespace/name): the count to hand to the HPA.
    Their manifests leave the count out, so that fleetflow never resets what the HPA set; the
    count is held by a field manager of its own, which the HPA takes over from."""
    autoscalers: list[Manifest] = Field(default_factory=list)
    new_autoscalers: list[str] = Field(default_factory=list)
    """Of ``autoscalers``, those the member has no HPA for yet."""
    unscale: list[str] = Field(default_factory=list)
    """HPAs (namespace/name) to delete: autoscaling turned off, or the workload leaves."""

    @property
    def empty(self) -> bool:
        return not (self.apply or self.remove or self.autoscalers or self.unscale)

    def applied_keys(self) -> list[str]:
        """The workloads this phase scales (namespace/name): those it applies, and those whose
        HPA it writes (an autoscaled workload's count is raised by its HPA, not by a write)."""
        keys = (f"{m['metadata']['namespace']}/{m['metadata']['name']}" for m in self.apply)
        scaled = (f"{h['metadata']['namespace']}/{h['metadata']['name']}" for h in self.autoscalers)
        return sorted({*keys, *scaled})


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
        if plan is None or plan.error or plan.held:  # not planned, invalid, or left as it runs
            continue
        later = downs if plan.budget is not None and _lowers(fd.key, plan, members) else ups
        for member, replicas in plan.replicas.items():
            if member not in reachable:
                continue
            live = members[member].deployments.get(fd.key)
            if plan.budget is not None:
                _autoscaled(fd, plan, member, members[member], federation, ups, later)
                continue
            manifest = member_workload(fd.kind, fd, member, replicas, federation)
            digest = manifest["metadata"]["annotations"][ANNOTATION_HASH]
            if live is not None and live.spec_hash == digest and live.replicas == replicas:
                continue
            shrink = live is not None and replicas < live.replicas
            phase = downs if shrink else ups
            phase[member].apply.append(manifest)
            if fd.key in members[member].autoscalers:  # autoscaling turned off
                phase[member].unscale.append(fd.key)
        for member in plan.remove_from:
            if member in reachable:
                phase = ups if plan.deleting else downs
                phase[member].remove.append(fd.key)
                if fd.key in members[member].autoscalers:
                    phase[member].unscale.append(fd.key)
    return WritePlan(
        ups={m: w for m, w in sorted(ups.items()) if not w.empty},
        downs={m: w for m, w in sorted(downs.items()) if not w.empty},
    )


def _lowers(key: str, plan: WorkloadPlan, members: dict[str, MemberView]) -> bool:
    """Whether a reachable member's HPA max falls in this run (budget moves between members)."""
    assert plan.budget is not None
    return any(
        key in v.autoscalers
        and plan.budget.shares.get(m, None) is not None
        and plan.budget.shares[m].max < v.autoscalers[key].max
        for m, v in members.items()
        if v.reachable
    )


def _autoscaled(
    fd: FederatedDeployment,
    plan: WorkloadPlan,
    member: str,
    view: MemberView,
    federation: str,
    ups: dict[str, MemberWrites],
    later: dict[str, MemberWrites],
) -> None:
    """An autoscaled workload in one member: its workload without a count (a new one starts at
    its share of ``spec.replicas``), and its HPA when its share changed. When budget moves
    between members, an HPA whose max rises (or a new one) waits for the second phase
    (``later``), after those whose max falls, so that the members' maxes never add up to more
    than the federation's between two writes; budget that a lost member held goes to the
    survivors in the first phase, make-before-break."""
    assert plan.budget is not None
    live = view.deployments.get(fd.key)
    start = plan.replicas[member]
    manifest = member_workload(fd.kind, fd, member, None if live else start, federation)
    if live is None or live.spec_hash != manifest["metadata"]["annotations"][ANNOTATION_HASH]:
        ups[member].apply.append(manifest)
        ups[member].seeds[fd.key] = live.replicas if live else start
    share = plan.budget.shares[member]
    hpa = member_autoscaler(fd, share.min, share.max, federation)
    seen = view.autoscalers.get(fd.key)
    if seen is None or seen.spec_hash != hpa["metadata"]["annotations"][ANNOTATION_HASH]:
        phase = (ups if seen is not None and share.max <= seen.max else later)[member]
        phase.autoscalers.append(hpa)
        if seen is None:
            phase.new_autoscalers.append(fd.key)


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
        budget = plan.budget
        moves = budget.moves if budget is not None else []
        status = FederatedDeploymentStatus(
            observed_generation=fd.generation,
            clusters=[_placement(c, n, plan) for c, n in sorted(plan.replicas.items())],
            unplaced=plan.unplaced,
            conditions=[Condition(type="Planned", status="True", reason="Placed")],
            last_budget_move=moves[-1] if moves else _kept_move(fd, budget),
        )
    return None if status == fd.status else fd.model_copy(update={"status": status})


def _kept_move(fd: FederatedDeployment, budget: Budget | None) -> BudgetMove | None:
    """The last budget move recorded, while the workload is autoscaled."""
    return fd.status.last_budget_move if budget is not None else None


def _placement(member: str, replicas: int, plan: WorkloadPlan) -> ClusterPlacement:
    entry = ClusterPlacement(name=member, desired=replicas, ready=plan.ready.get(member, 0))
    if plan.budget is None or member not in plan.budget.shares:
        return entry
    share = plan.budget.shares[member]
    return entry.model_copy(
        update={
            "min_replicas": share.min,
            "max_replicas": share.max,
            "autoscaler_desired": plan.autoscaler_desired.get(member),
        }
    )


def to_protect(
    workloads: Iterable[FederatedDeployment], plans: dict[str, WorkloadPlan] | None = None
) -> list[FederatedDeployment]:
    """Workloads that need our finalizer before anything is propagated for them (none that
    this run leaves as they run)."""
    return [
        fd
        for fd in workloads
        if not fd.deleting and not fd.protected and not (plans and plans[fd.key].held)
    ]


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
        and not plans[fd.key].held
        and not plans[fd.key].blocked_by
        and not failed & set(plans[fd.key].remove_from)
    ]


def ready_keys(plans: dict[str, WorkloadPlan], members: list[str]) -> dict[str, dict[str, int]]:
    """Per member, the workloads planned to run there and their planned replicas: what must be
    Ready, that many at least, before traffic or replicas are taken away anywhere else.

    An autoscaled workload's count is its HPA's to raise after the write (Ready as its own
    Deployment says is not enough), but only up to the HPA's min is it sure to: above it, the
    HPA follows its metrics and may lower what it last asked for while the run waits (seen: a
    failover waiting 120 s for 2 replicas of a member whose idle HPA had gone back to its min
    of 1). The member's min, from the budget's division, is what the wait may count on; the
    mins add up to the workload's minReplicas, so that floor holds before anything is taken."""
    return {
        m: {k: n for k, p in sorted(plans.items()) if not p.error and (n := _floor(p, m))}
        for m in members
    }


def _floor(plan: WorkloadPlan, member: str) -> int:
    planned = plan.replicas.get(member, 0)
    share = plan.budget.shares.get(member) if plan.budget else None
    return min(planned, share.min) if share else planned


# --- federated objects: one propagation engine -----------------------------------------------


class MemberWork(BaseModel):
    """What one member's propagation task gets: everything decided without asking the member.
    The task asks the member which of ``kinds`` it serves, lists its objects of those kinds
    that carry this federation's labels, and runs ``member_pass``."""

    desired: list[Desired] = Field(default_factory=list)
    kinds: list[tuple[str, str]] = Field(default_factory=list)
    """(apiVersion, kind) of every FederatedObject: what to discover and list."""
    hold: list[str] = Field(default_factory=list)
    deleting: list[str] = Field(default_factory=list)
    """FederatedObjects deleted without orphan: their claims may go too."""
    sources: list[str] = Field(default_factory=list)
    """Every FederatedObject this run read (namespace/name). A member object whose source is
    not one of them is left alone: a run limited to one namespace must not take what belongs
    to the others, and an object whose FederatedObject was deleted with orphan stays."""
    secret_namespaces: list[str] = Field(default_factory=list)
    """The namespaces the member was joined for: the only ones its token may read Secrets in."""

    @property
    def empty(self) -> bool:
        return not self.kinds


class Removal(BaseModel):
    """An object to delete from a member in the second phase."""

    key: ObjectKey
    api_version: str
    source: str


class FailedWrite(BaseModel):
    key: ObjectKey
    source: str
    message: str


class MemberPropagation(BaseModel):
    """What one member's first phase decided and did."""

    member: str
    passed: MemberPass
    removals: list[Removal] = Field(default_factory=list)
    failed: list[FailedWrite] = Field(default_factory=list)
    actions: list[Action] = Field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per object the member refused, and per object left alone."""
        refused = [f"{self.member}: {f.key} failed: {f.message}" for f in self.failed]
        left = [
            f"{self.member}: {s.state.value if s.state else s.outcome.value}: {s.message}"
            for s in self.passed.kept
            if s.message
        ]
        return [*refused, *left]


class ObjectsPlan(BaseModel):
    """Where every FederatedObject goes, and each reachable member's share."""

    placements: Placements = Field(default_factory=Placements)
    work: dict[str, MemberWork] = Field(default_factory=dict)
    errors: dict[str, str] = Field(default_factory=dict)
    """By FederatedObject: why it cannot be propagated (placement, an override); its member
    objects stay as they are."""
    refused: dict[str, dict[str, str]] = Field(default_factory=dict)
    """By FederatedObject, then member: a write refused before any request (a Secret for a
    namespace the member was not joined for)."""
    graph: DependencyGraph = Field(default_factory=DependencyGraph)


def not_joined(member: str, namespace: str) -> str:
    return (
        f"{member} was not joined for namespace {namespace}, and Secrets go only into joined "
        f"namespaces: rejoin {member} with namespaces including {namespace}"
    )


def plan_objects(
    objects: list[FederatedObject],
    invalid: list[str],
    workloads: Iterable[FederatedDeployment],
    plans: dict[str, WorkloadPlan],
    members: dict[str, MemberView],
    joined: dict[str, list[str]],
    federation: str,
) -> ObjectsPlan:
    """Every FederatedObject's members and manifests, before anything is written: an override
    that does not apply puts its object in error (its member objects stay as they are), and a
    Secret for a namespace a member was not joined for is refused there. ``invalid``: keys of
    FederatedObjects that could not be read (held too); ``joined``: each member's joined
    namespaces."""
    deps = [workload_deps(fd, plans[fd.key]) for fd in workloads if fd.key in plans]
    placements = placed_on(objects, deps, members)
    result = ObjectsPlan(placements=placements, graph=dependency_graph(deps, objects, placements))
    result.errors = {k: p.error for k, p in placements.objects.items() if p.error}
    reachable = sorted(m for m, v in members.items() if v.reachable)
    wanted: dict[str, list[Desired]] = {m: [] for m in reachable}
    for fo in sorted(objects, key=lambda o: o.key):
        if fo.key in result.errors or fo.deleting:
            continue
        secret = fo.kind == "Secret" and group_of(fo.api_version) == ""
        mine: dict[str, Desired] = {}
        try:
            for member in placements.objects[fo.key].members:
                if member not in wanted:
                    continue
                if secret and fo.namespace not in joined.get(member, []):
                    result.refused.setdefault(fo.key, {})[member] = not_joined(member, fo.namespace)
                    continue
                manifest = member_object(fo, member, federation)
                mine[member] = Desired(source=fo.key, manifest=manifest, adopt=fo.spec.adopt)
        except InvalidRequest as exc:
            result.errors[fo.key] = str(exc)
            result.refused.pop(fo.key, None)
            continue
        for member, desired in mine.items():
            wanted[member].append(desired)
    hold = sorted({*to_hold(objects, placements), *result.errors, *invalid})
    deleting = sorted(fo.key for fo in objects if fo.deleting and not fo.orphan)
    kinds = sorted({(fo.api_version, fo.kind) for fo in objects})
    if kinds:
        result.work = {
            m: MemberWork(
                desired=wanted[m],
                kinds=kinds,
                hold=hold,
                deleting=deleting,
                sources=sorted({*(fo.key for fo in objects), *invalid}),
                secret_namespaces=sorted(joined.get(m, [])),
            )
            for m in reachable
        }
    return result


def claims_kept(passed: MemberPass, deleting: Iterable[str]) -> MemberPass:
    """``passed`` without the removal of a PersistentVolumeClaim that merely stopped being
    placed: deleting a claim can delete its data, so a claim goes only with its
    FederatedObject."""
    gone = set(deleting)
    remove = [
        s
        for s in passed.remove
        if (s.key.group, s.key.kind) != ("", "PersistentVolumeClaim") or s.source in gone
    ]
    return passed.model_copy(update={"remove": remove})


def object_statuses(
    objects: Iterable[FederatedObject],
    plan: ObjectsPlan,
    results: Iterable[MemberPropagation],
    *,
    unreachable: Iterable[str],
    failed_members: Mapping[str, str],
) -> list[FederatedObject]:
    """The FederatedObjects whose status changes, with their new status. ``failed_members``:
    members whose first phase failed as a whole, with why. A member on which the object stays
    as desired keeps ``Applied`` rather than turning ``Unchanged``: a status that changes on
    every run would be a write on every run."""
    results = list(results)
    failed = {(r.member, f.key): f.message for r in results for f in r.failed}
    found = member_statuses(
        [r.passed for r in results], plan.placements, unreachable=unreachable, failed=failed
    )
    by_object: dict[str, dict[str, MemberObjectStatus]] = {
        k: {s.name: s for s in v} for k, v in found.items()
    }
    for key, refused in plan.refused.items():
        for member, message in refused.items():
            by_object.setdefault(key, {})[member] = MemberObjectStatus(
                name=member, state=MemberState.FAILED, message=message
            )
    for member, message in failed_members.items():
        for key in plan.placements.on(member):
            by_object.setdefault(key, {})[member] = MemberObjectStatus(
                name=member, state=MemberState.FAILED, message=message
            )
    reachable = [m for m, r in plan.work.items()]
    changed = []
    for fo in objects:
        if fo.deleting:
            status = _deleting_status(fo, reachable)
        elif fo.key in plan.errors:
            condition = Condition(
                type="Planned", status="False", reason="Invalid", message=plan.errors[fo.key]
            )
            status = fo.status.model_copy(
                update={"observed_generation": fo.generation, "conditions": [condition]}
            )
        else:
            old = {c.name: c for c in fo.status.clusters}
            clusters = []
            for name, entry in sorted(by_object.get(fo.key, {}).items()):
                before = old.get(name)
                if (
                    entry.state is MemberState.UNCHANGED
                    and before is not None
                    and before.state is MemberState.APPLIED
                ):
                    entry = before
                clusters.append(entry)
            follows = plan.placements.objects[fo.key].follows
            message = f"follows {', '.join(follows)}" if follows else ""
            condition = Condition(type="Planned", status="True", reason="Placed", message=message)
            status = FederatedObjectStatus(
                observed_generation=fo.generation, clusters=clusters, conditions=[condition]
            )
        if status is not None and status != fo.status:
            changed.append(fo.model_copy(update={"status": status}))
    return changed


def _deleting_status(fo: FederatedObject, reachable: list[str]) -> FederatedObjectStatus | None:
    """A deleted object's members that may still hold it, and why its deletion waits; None
    when nothing holds it (the finalizer goes, and with it the object)."""
    blocked = deletion_blocked_by(fo, reachable)
    if fo.orphan or not blocked:
        return None
    condition = Condition(
        type="Deleting",
        status="True",
        reason="WaitingForMembers",
        message=f"unreachable members may still hold it: {', '.join(blocked)}",
    )
    clusters = [c for c in fo.status.clusters if c.name in blocked]
    return fo.status.model_copy(update={"clusters": clusters, "conditions": [condition]})


def objects_to_protect(objects: Iterable[FederatedObject]) -> list[FederatedObject]:
    """FederatedObjects that need our finalizer before anything is propagated for them."""
    return [fo for fo in objects if not fo.deleting and not fo.protected]


def objects_to_release(
    objects: Iterable[FederatedObject],
    plan: ObjectsPlan,
    *,
    cleaned: bool,
    failed_sources: Iterable[str],
    failed_members: Iterable[str],
) -> list[FederatedObject]:
    """Deleted FederatedObjects whose members are clean: ``cleaned`` (the second phase ran),
    none of their removals failed, no member's pass failed, no unreachable member may still
    hold them. One deleted with orphan is let go at once."""
    failed = set(failed_sources)
    reachable = list(plan.work)
    return [
        fo
        for fo in objects
        if fo.deleting
        and fo.protected
        and (
            fo.orphan
            or (
                cleaned
                and fo.key not in failed
                and not list(failed_members)
                and not deletion_blocked_by(fo, reachable)
            )
        )
    ]
