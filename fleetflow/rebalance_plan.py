"""What a rebalance run decides, from one look at the federation. Pure.

``decide_rebalance`` turns the snapshot (the host's view and every member's probe, assessed)
and the request into a ``RebalancePlan``: each workload's replicas, where each federated object
goes, what each member gets in each phase, and what needs a finalizer first. The flow then acts;
what it learns while acting (which replicas turned Ready, which members failed) goes back in
through the plan's methods, which say what to release, which statuses to write, which DNS to
switch, and the run's report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pydantic import BaseModel, Field

from fleetflow.autoscaling import AutoscaleRow
from fleetflow.controlplane import LABEL_FEDERATION, Manifest
from fleetflow.errors import InvalidRequest, PlacementError, UnknownName
from fleetflow.federated import FederatedDeployment, HostObject, budget_rows
from fleetflow.health import Health
from fleetflow.models import Action, RebalanceRequest, Report
from fleetflow.objects import InvalidObject
from fleetflow.probes import Assessment
from fleetflow.rebalance import HostView, WorkloadPlan, plan_workload
from fleetflow.registry import MemberCluster
from fleetflow.snapshot import Snapshot
from fleetflow.status import StatusRow, status_rows
from fleetflow.traffic import endpoints, exposed, to_write
from fleetflow.writes import (
    MemberPropagation,
    MemberWrites,
    ObjectsPlan,
    Readiness,
    Removal,
    WritePlan,
    held_back,
    object_statuses,
    objects_to_protect,
    objects_to_release,
    plan_objects,
    ready_keys,
    to_protect,
    to_release,
    with_readiness,
    workload_status,
    write_plan,
)


class Acted(BaseModel):
    """What one phase of writes did in the members: its writes, the members where it failed
    (with why), and each member's result."""

    actions: list[Action] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)
    results: dict[str, MemberPropagation] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    """Why members failed as a whole."""

    def failed_sources(self) -> set[str]:
        return {f.source for r in self.results.values() for f in r.failed}

    def result_notes(self) -> list[str]:
        return [line for r in self.results.values() for line in r.notes()]


class RebalancePlan(BaseModel):
    """Every write a rebalance run makes, decided before the first."""

    federation: str
    zone: str
    dry_run: bool
    view: HostView
    found: Assessment
    watched: bool
    plans: dict[str, WorkloadPlan]
    placed: ObjectsPlan
    writes: WritePlan
    protect: list[HostObject]
    holds: list[str] = Field(default_factory=list)
    """Why the second phase waits: scale-ups not Ready in time."""

    @property
    def workloads(self) -> list[FederatedDeployment]:
        return self.view.workloads

    def applied(self) -> dict[str, dict[str, int]]:
        """Per member, the workloads the first phase applies: what must turn Ready, and how
        many replicas at least (an autoscaled one's HPA raises its count after the write)."""
        planned = ready_keys(self.plans, list(self.writes.ups))
        return {
            m: {k: planned[m].get(k, 0) for k in w.applied_keys()}
            for m, w in self.writes.ups.items()
        }

    def with_readiness(self, readiness: dict[str, Readiness], timeout: float) -> RebalancePlan:
        """The plan once the first phase's replicas were waited for: Ready counts in, and the
        second phase held back when some were not Ready in time."""
        return self.model_copy(
            update={
                "plans": with_readiness(self.plans, readiness),
                "holds": held_back(readiness, timeout),
            }
        )

    def downs(self, ups: Acted) -> tuple[dict[str, MemberWrites], dict[str, list[Removal]]]:
        """The second phase: scale-downs and removals, nothing while it is held back."""
        if self.holds:
            return {}, {}
        return self.writes.downs, {m: r.removals for m, r in ups.results.items()}

    def release(self, ups: Acted, downs: Acted) -> list[HostObject]:
        """Deleted workloads and objects whose members are clean: their finalizer goes."""
        failed = {*ups.failed, *downs.failed}
        return [
            *to_release(self.workloads, self.plans, failed),
            *objects_to_release(
                self.view.objects.valid,
                self.placed,
                cleaned=not self.holds,
                failed_sources={*ups.failed_sources(), *downs.failed_sources()},
                failed_members=failed,
            ),
        ]

    def statuses(
        self, ups: Acted, downs: Acted
    ) -> tuple[list[MemberCluster | HostObject | InvalidObject], list[StatusRow]]:
        """The status writes (members' health, workloads, objects) and the rows of the
        federation-status artifact they make."""
        unreachable = sorted(m for m, v in self.found.members.items() if not v.reachable)
        objects = object_statuses(
            self.view.objects.valid,
            self.placed,
            [*ups.results.values(), *downs.results.values()],
            unreachable=unreachable,
            failed_members=ups.failed,
        )
        reported = [o for o in self.view.objects.invalid if not o.reported]
        workloads = [s for fd in self.workloads if (s := workload_status(fd, self.plans[fd.key]))]
        rows = status_rows(
            self.workloads,
            self.view.objects.valid,
            unreadable=self.view.objects.invalid,
            updated=[*workloads, *objects],
        )
        return [*self.found.changed, *workloads, *objects, *reported], rows

    def autoscaled(self, changes: Iterable[object]) -> list[AutoscaleRow]:
        """The autoscale-status rows: each autoscaled workload with the status this run
        records (``changes``: what ``statuses`` said to write)."""
        newer = {c.key: c for c in changes if isinstance(c, FederatedDeployment)}
        return [r for fd in self.workloads for r in budget_rows(newer.get(fd.key, fd))]

    def traffic(self) -> tuple[list[Manifest], list[str]]:
        """The DNSEndpoints that differ from those the run read, and why some workloads cannot
        be exposed."""
        ingress = {m.name: m.spec.ingress_address for m in self.view.members}
        shown = exposed(self.workloads)  # only these have DNS: no copy of the other plans
        plans = {fd.key: self.plans[fd.key] for fd in shown if fd.key in self.plans}
        if not self.holds:
            plans = {k: _leaving(p) for k, p in plans.items()}
        wanted, unexposed = endpoints(
            shown, plans, self.found.members, ingress, self.zone, self.federation
        )
        return to_write(wanted, self.view.endpoints), unexposed

    def errors(self) -> tuple[list[str], list[str]]:
        """Workloads that cannot be planned, and objects that cannot be propagated."""
        objects = [*(o.error for o in self.view.objects.invalid), *self.placed.errors.values()]
        return [p.error for p in self.plans.values() if p.error], objects

    def report(self, actions: list[Action], ups: Acted, downs: Acted, written: int) -> Report:
        members, unassigned = self.found.members, self.view.unassigned
        workload_errors, object_errors = self.errors()
        _, unexposed = self.traffic()
        return Report(
            procedure=f"rebalance {self.federation}",
            dry_run=self.dry_run,
            actions=actions,
            notes=[
                f"{len(self.workloads)} workloads and {len(self.view.objects.valid)} federated "
                f"objects over {len(members)} members",
                *(["members' health as the health watcher recorded it"] if self.watched else []),
                *(
                    f"{m}: {v.health.health.value}"
                    for m, v in members.items()
                    if v.health.health is not Health.HEALTHY
                ),
                *self.budget_lines(),
                *ups.notes,
                *self.holds,
                *downs.notes,
                *ups.result_notes(),
                *downs.result_notes(),
                *(m.line() for m in self.placed.placements.missing),
                f"{written} status updates in the host",
                *workload_errors,
                *object_errors,
                *unexposed,
                *(
                    [
                        f"{len(unassigned)} federated workloads and objects name no federation, "
                        f"so none propagates them (label them {LABEL_FEDERATION}=<federation>): "
                        + ", ".join(unassigned[:5])
                        + (" ..." if len(unassigned) > 5 else "")
                    ]
                    if unassigned
                    else []
                ),
            ],
        )

    def autoscalers(self) -> dict[str, list[Manifest]]:
        """Per member, one HPA of each autoscaled workload this run writes: what the members'
        HPA API must accept before anything is written."""
        found: dict[str, list[Manifest]] = {}
        seen: set[str] = set()
        for phase in (self.writes.ups, self.writes.downs):
            for member, writes in phase.items():
                for hpa in writes.autoscalers:
                    key = f"{hpa['metadata']['namespace']}/{hpa['metadata']['name']}"
                    if key not in seen:
                        seen.add(key)
                        found.setdefault(member, []).append(hpa)
        return found

    def refusing(self, refused: Mapping[str, str]) -> RebalancePlan:
        """The plan without the workloads whose autoscaling a member's API refused: each is in
        error, and nothing of it is written."""
        if not refused:
            return self
        plans = {
            k: p.model_copy(update={"error": refused[k]}) if k in refused else p
            for k, p in self.plans.items()
        }
        seen = Snapshot(view=self.view, found=self.found, watched=self.watched)
        return _assembled(seen, plans, self.dry_run, federation=self.federation, zone=self.zone)

    def budget_lines(self) -> list[str]:
        """One line per budget move of an autoscaled workload, with its reason."""
        return [
            f"{key}: budget {move.line()}"
            for key, plan in sorted(self.plans.items())
            if plan.budget is not None
            for move in plan.budget.moves
        ]

    def raise_errors(self) -> None:
        """A run that met invalid input fails, after doing what it could (not a dry run)."""
        workload_errors, object_errors = self.errors()
        if self.dry_run:
            return
        if object_errors:
            raise InvalidRequest("; ".join([*workload_errors, *object_errors]))
        if workload_errors:
            raise PlacementError("; ".join(workload_errors))


def _leaving(plan: WorkloadPlan) -> WorkloadPlan:
    """The plan as traffic must see it before the second phase: a member about to lose all its
    replicas (drained by a taint, left by its group, deselected) no longer serves, so DNS
    moves away before the replicas do. An invalid or held plan keeps what runs."""
    if plan.error or plan.held or not plan.replicas:
        return plan
    staying = {m: min(n, plan.replicas.get(m, 0)) for m, n in plan.ready.items()}
    return plan.model_copy(update={"ready": staying})


OUTSIDE = "outside this run's name and labels: left as it runs"


def _named(fd: FederatedDeployment, request: RebalanceRequest) -> bool:
    """The run's name and labels select it (its namespace was selected by the read)."""
    if request.name is not None and fd.name != request.name:
        return False
    return request.labels.items() <= fd.labels.items()


def stamped(plan: WorkloadPlan, at: datetime | None) -> WorkloadPlan:
    """The plan with its budget moves dated: when the members were seen."""
    if plan.budget is None or at is None or not plan.budget.moves:
        return plan
    when = at.isoformat(timespec="seconds")
    moves = [m.model_copy(update={"at": when}) for m in plan.budget.moves]
    return plan.model_copy(update={"budget": plan.budget.model_copy(update={"moves": moves})})


def decide_rebalance(
    seen: Snapshot, request: RebalanceRequest, *, federation: str, zone: str
) -> RebalancePlan:
    """The rebalance of what the host holds over the members as probed. Pure."""
    view, found = seen.view, seen.found
    named = [fd for fd in view.workloads if _named(fd, request)]
    if request.name and not named:
        where = f" in namespace {request.namespace}" if request.namespace else ""
        raise UnknownName(f"no FederatedDeployment named {request.name!r}{where}")
    workloads = view.workloads
    plans = {
        fd.key: stamped(
            plan_workload(
                fd, found.members, request.max_moves, hold=None if fd in named else OUTSIDE
            ),
            seen.at,
        )
        for fd in workloads
    }
    return _assembled(seen, plans, request.dry_run, federation=federation, zone=zone)


def _assembled(
    seen: Snapshot,
    plans: dict[str, WorkloadPlan],
    dry_run: bool,
    *,
    federation: str,
    zone: str,
) -> RebalancePlan:
    """Everything the workloads' plans imply: where the objects go, the writes, the
    finalizers."""
    view, found = seen.view, seen.found
    workloads, objects = view.workloads, view.objects
    joined: Mapping[str, list[str]] = {m.name: m.namespaces for m in view.members}
    placed = plan_objects(
        objects.valid,
        [o.key for o in objects.invalid],
        workloads,
        plans,
        found.members,
        dict(joined),
        federation,
    )
    return RebalancePlan(
        federation=federation,
        zone=zone,
        dry_run=dry_run,
        view=view,
        found=found,
        watched=seen.watched,
        plans=plans,
        placed=placed,
        writes=write_plan(workloads, plans, found.members, federation),
        protect=[*to_protect(workloads, plans), *objects_to_protect(objects.valid)],
    )


def changed_under(
    view: HostView, members: list[MemberCluster], workloads: list[FederatedDeployment]
) -> list[str]:
    """What the run's writes depend on that changed in the host since it read it, one line
    each: a member fenced or unfenced, its taints, a workload held or released by a migration.
    A run whose plan predates such a change writes absolute replica counts over it (it would
    start a source a migration just quiesced, or fill a region a failover just drained), so it
    stops before its next write; the next run plans from what is there now."""
    before = {m.name: m for m in view.members}
    lines = []
    for member in members:
        was = before.get(member.name)
        if was is not None and was.fenced != member.fenced:
            lines.append(f"{member.name} {'fenced' if member.fenced else 'unfenced'}")
        if was is not None and was.taints != member.taints:
            lines.append(f"{member.name}'s taints changed")
    held = {fd.key: fd.migration for fd in view.workloads}
    for fd in workloads:
        if fd.key in held and held[fd.key] != fd.migration:
            lines.append(
                f"{fd.key} held by {fd.migration}" if fd.migration else f"{fd.key} released"
            )
    return lines
