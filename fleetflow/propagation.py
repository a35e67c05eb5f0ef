"""The decisions of one propagation pass: where each federated object goes, in what order a
member gets its writes, and for each object whether to write it at all. Pure.

- ``placed_on``: an object with a placement goes where it selects (the planner's own selection);
  one without follows the workloads that reference it, to the members where they have replicas.
  A dependency that no FederatedObject provides is reported, never invented.
- ``decide``: create, update, drift (a hand edit, put back), unchanged, conflict (someone
  else's object: never overwritten), adopt, remove, or nothing. Nothing changed means no write:
  an object is unchanged when its hash annotation matches and every field fleetflow sets is
  still so on the member (extra fields the member's defaulting adds are fine).
- ``member_pass``: one member's writes, in dependency order (ServiceAccount, Secret,
  ConfigMap, PVC, Service, other kinds, workloads, Ingress), removals in the reverse order.
- ``retain_claims``: a member StatefulSet never deletes its claims' data, on scale-down or
  removal.

Removals of objects that follow a workload belong after the workload's own removal on that
member (the rebalance's second, make-before-break phase): pods still running there need them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel, ConfigDict, Field

from fleetflow.controlplane import LABEL_FEDERATION, LABEL_MANAGED, MANAGED_BY, Manifest
from fleetflow.dependencies import Ref, references
from fleetflow.errors import PlacementError
from fleetflow.federated import (
    ANNOTATION_HASH,
    LABEL_WORKLOAD,
    FederatedDeployment,
    FederatedDeploymentSpec,
    member_deployment,
    spec_hash,
)
from fleetflow.objects import (
    LABEL_OBJECT,
    FederatedObject,
    MemberObjectStatus,
    MemberState,
    group_of,
)
from fleetflow.patches import json_equal
from fleetflow.rebalance import MemberView, WorkloadPlan, select

# --- ownership and the decision for one object ---------------------------------------------

OWNER_LABELS = (LABEL_MANAGED, LABEL_FEDERATION, LABEL_OBJECT, LABEL_WORKLOAD)
"""The labels that say which fleetflow source put an object on a member."""


class Outcome(StrEnum):
    CREATE = "create"
    UPDATE = "update"  # the template (or an override) changed
    DRIFT = "drift"  # same template, a field fleetflow sets was edited on the member
    ADOPT = "adopt"  # an unmanaged object the federated object asked to take over
    REMOVE = "remove"
    UNCHANGED = "unchanged"
    CONFLICT = "conflict"  # not ours: left alone
    NOTHING = "nothing"

    @property
    def writes(self) -> bool:
        return self in _WRITES


_WRITES = frozenset({Outcome.CREATE, Outcome.UPDATE, Outcome.DRIFT, Outcome.ADOPT, Outcome.REMOVE})


def owner_of(manifest: Mapping[str, Any]) -> dict[str, str]:
    """The fleetflow ownership labels an object carries (empty for an unmanaged one)."""
    labels = (manifest.get("metadata") or {}).get("labels") or {}
    return {k: labels[k] for k in OWNER_LABELS if k in labels}


def decide(
    desired: Manifest | None,
    live: Manifest | None,
    *,
    adopt: bool = False,
    orphan: bool = False,
    owner: Mapping[str, str] | None = None,
) -> Outcome:
    """What to do with one object on one member. ``desired`` is ``member_object``'s result,
    ``live`` the member's object of that name. An object is ours when its ownership labels
    are exactly the desired ones (``owner`` when nothing is desired): an object of another
    federation or another source is as untouchable as an unmanaged one. ``adopt`` takes over
    unmanaged objects only; ``orphan`` leaves an object that is no longer desired."""
    if owner is None:
        if desired is None:
            raise ValueError("decide needs the owner labels when nothing is desired")
        owner = owner_of(desired)
    if live is None:
        return Outcome.NOTHING if desired is None else Outcome.CREATE
    theirs = owner_of(live)
    ours = theirs == dict(owner)
    if desired is None:
        return Outcome.REMOVE if ours and not orphan else Outcome.NOTHING
    if not ours:
        unmanaged = theirs.get(LABEL_MANAGED) != MANAGED_BY
        return Outcome.ADOPT if adopt and unmanaged else Outcome.CONFLICT
    if _hash(live) != _hash(desired):
        return Outcome.UPDATE
    return Outcome.UNCHANGED if contained(desired, live) else Outcome.DRIFT


def _hash(manifest: Mapping[str, Any]) -> str | None:
    return ((manifest.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_HASH)


_QUANTITY_MAPS = frozenset({"requests", "limits", "hard", "capacity"})


def contained(desired: Any, live: Any, path: tuple[str | int, ...] = ()) -> bool:
    """Every field of ``desired`` is in ``live`` with the same value. Extra fields in ``live``
    (server defaults, status, others' labels) do not count; an empty or null desired field may
    be absent (the API server drops them); lists match item by item; resource quantities
    compare by value (``1000m`` is ``1``), as the API server rewrites them."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(
            (_empty(value) if key not in live else contained(value, live[key], (*path, key)))
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(desired) == len(live)
            and all(
                contained(d, v, (*path, i))
                for i, (d, v) in enumerate(zip(desired, live, strict=True))
            )
        )
    if json_equal(desired, live):
        return True
    if (len(path) >= 2 and path[-2] in _QUANTITY_MAPS) or path[-1:] == ("sizeLimit",):
        amount = _quantity(desired)
        return amount is not None and amount == _quantity(live)
    return False


def _empty(value: Any) -> bool:
    return value is None or value == {} or value == []


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, ArithmeticError):
        return None


# --- write order on one member ---------------------------------------------------------------

_RANKS: dict[tuple[str, str], int] = {
    ("", "ServiceAccount"): 0,
    ("", "Secret"): 1,
    ("", "ConfigMap"): 2,
    ("", "PersistentVolumeClaim"): 3,
    ("", "Service"): 4,
    # 5: every other kind, custom resources included
    ("apps", "Deployment"): 6,
    ("apps", "StatefulSet"): 7,
    ("apps", "DaemonSet"): 7,
    ("batch", "Job"): 8,
    ("batch", "CronJob"): 8,
    ("networking.k8s.io", "Ingress"): 9,
}
_OTHER = 5


class ObjectKey(BaseModel):
    """An object on a member: the API version is left out, as one object may be read through
    several versions of its group."""

    model_config = ConfigDict(frozen=True)

    group: str
    kind: str
    namespace: str
    name: str

    @classmethod
    def of(cls, manifest: Mapping[str, Any]) -> ObjectKey:
        meta = manifest["metadata"]
        return cls(
            group=group_of(manifest["apiVersion"]),
            kind=manifest["kind"],
            namespace=meta.get("namespace", ""),
            name=meta["name"],
        )

    @property
    def rank(self) -> int:
        """Its place in the apply order: what others need comes first."""
        return _RANKS.get((self.group, self.kind), _OTHER)

    def order(self) -> tuple[int, str, str, str, str]:
        return (self.rank, self.group, self.kind, self.namespace, self.name)

    def __str__(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        return f"{kind} {self.namespace}/{self.name}"


def apply_order(manifests: Iterable[Manifest]) -> list[Manifest]:
    """Dependencies first: ServiceAccount, Secret, ConfigMap, PVC, Service, other kinds,
    workloads (Deployment, StatefulSet, Job), Ingress; by name within a kind."""
    return sorted(manifests, key=lambda m: ObjectKey.of(m).order())


def removal_order(manifests: Iterable[Manifest]) -> list[Manifest]:
    """The apply order reversed: nothing is removed while something that needs it remains."""
    return apply_order(manifests)[::-1]


# --- placement: own, or following the workloads ----------------------------------------------


class WorkloadDeps(BaseModel):
    """A federated workload, what its pods reference, and its desired replicas per member."""

    key: str
    kind: str = "Deployment"
    refs: list[Ref] = Field(default_factory=list)
    replicas: dict[str, int] = Field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.key.partition("/")[0]

    @property
    def members(self) -> list[str]:
        return sorted(m for m, n in self.replicas.items() if n > 0)


def workload_deps(fd: FederatedDeployment, plan: WorkloadPlan) -> WorkloadDeps:
    """Where a workload's dependencies are needed after this run: where it is planned, or
    where it runs now if the run leaves it as it is (an invalid placement, an orphaning
    deletion, a migration, a run filtered to others)."""
    if plan.held:  # left as it runs (or at 0, stopped by a migration): its needs stay there
        replicas = {m: max(n, 1) for m, n in plan.current.items()}
    elif plan.error or (plan.deleting and fd.orphan):
        replicas = plan.current
    elif plan.deleting:
        replicas = {}
    else:
        replicas = plan.replicas
    refs = references({**fd.spec.template, "kind": fd.kind})
    return WorkloadDeps(key=fd.key, kind=fd.kind, refs=refs, replicas=replicas)


class ObjectPlacement(BaseModel):
    """The members one FederatedObject goes to, and why."""

    key: str
    members: list[str] = Field(default_factory=list)
    follows: list[str] = Field(default_factory=list)
    """Workloads whose members it follows (when it has no placement of its own)."""
    error: str | None = None


class MissingDependency(BaseModel):
    """A workload needs an object on some members and no FederatedObject puts it there."""

    workload: str
    ref: Ref
    members: list[str]
    reason: str

    def line(self) -> str:
        return f"{self.workload} needs {self.ref} on {', '.join(self.members)}: {self.reason}"


class Placements(BaseModel):
    objects: dict[str, ObjectPlacement] = Field(default_factory=dict)
    missing: list[MissingDependency] = Field(default_factory=list)

    def on(self, member: str) -> list[str]:
        """The FederatedObjects (keys) placed on ``member``."""
        return sorted(k for k, p in self.objects.items() if member in p.members)


def provider_key(namespace: str, ref: Ref) -> tuple[str, str, str, str]:
    """What a FederatedObject must target to provide ``ref`` (all refs are core-group)."""
    return ("", ref.kind, namespace, ref.name)


def _target(fo: FederatedObject) -> tuple[str, str, str, str]:
    return (group_of(fo.api_version), fo.kind, fo.namespace, fo.target)


def placed_on(
    objects: Iterable[FederatedObject],
    workloads: Iterable[WorkloadDeps],
    members: dict[str, MemberView],
) -> Placements:
    """Which members each FederatedObject goes to, and the dependencies no object provides.
    An object being deleted goes nowhere; two objects targeting one member object: the first
    by key wins, the other is in error."""
    workloads = sorted(workloads, key=lambda w: w.key)
    result = Placements()
    providers: dict[tuple[str, str, str, str], FederatedObject] = {}
    for fo in sorted(objects, key=lambda o: o.key):
        placement = result.objects[fo.key] = ObjectPlacement(key=fo.key)
        first = providers.setdefault(_target(fo), fo)
        if first is not fo:
            placement.error = (
                f"{fo.key}: targets {fo.kind} {fo.target} as {first.key} does; "
                "one object has one source"
            )
        elif fo.deleting:
            continue
        elif fo.spec.placement is not None:
            try:
                placement.members = select(_selectable(fo), members)
            except PlacementError as exc:
                placement.error = str(exc)
        else:
            users = [
                w
                for w in workloads
                if w.members and any(provider_key(w.namespace, r) == _target(fo) for r in w.refs)
            ]
            placement.follows = [w.key for w in users]
            placement.members = sorted({m for w in users for m in w.members})
    for w in workloads:
        for ref in w.refs:
            provider = providers.get(provider_key(w.namespace, ref))
            if provider is None:
                gap, reason = w.members, "no FederatedObject provides it"
            else:
                placed = result.objects[provider.key]
                gap = [m for m in w.members if m not in placed.members]
                reason = placed.error or (
                    f"{provider.key} is being deleted"
                    if provider.deleting
                    else f"the placement of {provider.key} leaves them out"
                )
            if gap:
                result.missing.append(
                    MissingDependency(workload=w.key, ref=ref, members=gap, reason=reason)
                )
    return result


def _selectable(fo: FederatedObject) -> FederatedDeployment:
    """``select`` reads a workload's key and placement only: the one member selection, for
    objects too."""
    return FederatedDeployment(
        name=fo.name,
        namespace=fo.namespace,
        spec=FederatedDeploymentSpec(template={}, placement=fo.spec.placement),
    )


# --- the dependency graph, for the plan artifact ----------------------------------------------


class Edge(BaseModel):
    ref: Ref
    provider: str | None = None
    """The FederatedObject that provides it, if any."""
    missing_on: list[str] = Field(default_factory=list)
    reason: str = ""

    def state(self) -> str:
        if not self.missing_on:
            return "ok"
        return f"**missing** on {', '.join(self.missing_on)}: {self.reason}"


class WorkloadGraph(BaseModel):
    workload: str
    kind: str
    members: list[str]
    edges: list[Edge]


class DependencyGraph(BaseModel):
    """Per workload: what its pods need, who provides it, and where it would be missing. Names
    only, never an object's content: the artifact must not show a Secret's data."""

    workloads: list[WorkloadGraph] = Field(default_factory=list)

    def markdown(self) -> str:
        if not self.workloads:
            return "No federated workload references other objects."
        parts = []
        for w in self.workloads:
            on = ", ".join(w.members) or "no member"
            rows = [f"| {e.ref} | {e.provider or '-'} | {e.state()} |" for e in w.edges]
            parts.append(
                f"#### {w.workload} ({w.kind}) on {on}\n\n"
                "| Needs | Federated by | State |\n|---|---|---|\n" + "\n".join(rows)
            )
        return "\n\n".join(parts)


def dependency_graph(
    workloads: Iterable[WorkloadDeps],
    objects: Iterable[FederatedObject],
    placements: Placements,
) -> DependencyGraph:
    providers: dict[tuple[str, str, str, str], str] = {}
    for fo in sorted(objects, key=lambda o: o.key):
        providers.setdefault(_target(fo), fo.key)
    missing = {(m.workload, m.ref): m for m in placements.missing}
    graphs = []
    for w in sorted(workloads, key=lambda w: w.key):
        if not w.refs:
            continue
        edges = []
        for ref in w.refs:
            gap = missing.get((w.key, ref))
            edges.append(
                Edge(
                    ref=ref,
                    provider=providers.get(provider_key(w.namespace, ref)),
                    missing_on=gap.members if gap else [],
                    reason=gap.reason if gap else "",
                )
            )
        graphs.append(WorkloadGraph(workload=w.key, kind=w.kind, members=w.members, edges=edges))
    return DependencyGraph(workloads=graphs)


# --- one member's pass -----------------------------------------------------------------------


class Desired(BaseModel):
    """An object one source wants on this member: ``member_object``'s manifest."""

    source: str
    manifest: Manifest
    adopt: bool = False


class Step(BaseModel):
    """One object's fate on the member; ``manifest`` is what to apply (None for a removal)."""

    key: ObjectKey
    source: str
    outcome: Outcome
    manifest: Manifest | None = None
    missing_kind: bool = False
    message: str = ""

    @property
    def state(self) -> MemberState | None:
        """What the source's status says for this member if the write goes through (a write
        that fails is ``Failed``, whatever this says); None for removals."""
        if self.missing_kind:
            return MemberState.MISSING_KIND
        return _STATES.get(self.outcome)


_STATES = {
    Outcome.CREATE: MemberState.APPLIED,
    Outcome.UPDATE: MemberState.APPLIED,
    Outcome.ADOPT: MemberState.APPLIED,
    Outcome.DRIFT: MemberState.DRIFTED,
    Outcome.UNCHANGED: MemberState.UNCHANGED,
    Outcome.CONFLICT: MemberState.CONFLICT,
}


class MemberPass(BaseModel):
    """One member's share of a propagation: writes in order, and what needs none."""

    member: str
    apply: list[Step] = Field(default_factory=list)
    remove: list[Step] = Field(default_factory=list)
    kept: list[Step] = Field(default_factory=list)

    @property
    def writes(self) -> int:
        return len(self.apply) + len(self.remove)


def member_pass(
    member: str,
    federation: str,
    desired: Iterable[Desired],
    live: Iterable[Manifest],
    *,
    hold: Iterable[str] = (),
    kinds: Mapping[tuple[str, str], bool] | None = None,
) -> MemberPass:
    """Decide every object on one member. ``live``: the member's objects of the kinds
    involved, in the namespaces involved (unmanaged ones too: they are what a conflict is
    about). ``hold``: sources (FederatedObject keys) whose objects stay as they are: deleted
    with orphan, or in error. ``kinds``: (apiVersion, kind) -> namespaced, as the member's
    discovery answers; a kind it does not serve is reported, not written; None: not known."""
    held = set(hold)
    by_key = {ObjectKey.of(m): m for m in live}
    result = MemberPass(member=member)
    wanted: dict[ObjectKey, str] = {}
    for want in desired:
        key = ObjectKey.of(want.manifest)
        step = Step(key=key, source=want.source, outcome=Outcome.NOTHING)
        served = None if kinds is None else kinds.get((want.manifest["apiVersion"], key.kind))
        if key in wanted:
            step.outcome = Outcome.CONFLICT
            step.message = f"{key} is also wanted by {wanted[key]}"
        elif kinds is not None and served is None:
            step.missing_kind = True
            step.message = f"{member} does not serve {want.manifest['apiVersion']} {key.kind}"
        elif served is False:
            step.outcome = Outcome.CONFLICT
            step.message = f"{key.kind} is cluster-scoped on {member}"
        else:
            wanted[key] = want.source
            step.outcome = decide(want.manifest, by_key.get(key), adopt=want.adopt)
            if step.outcome.writes:
                step.manifest = want.manifest
            elif step.outcome is Outcome.CONFLICT:
                step.message = _conflict(key, member, by_key[key])
        (result.apply if step.outcome.writes else result.kept).append(step)
    for key, obj in by_key.items():
        owner = owner_of(obj)
        name = owner.get(LABEL_OBJECT)
        if key in wanted or not name or owner.get(LABEL_FEDERATION) != federation:
            continue
        source = f"{key.namespace}/{name}"
        outcome = decide(None, obj, owner=owner, orphan=source in held)
        if outcome.writes:
            result.remove.append(Step(key=key, source=source, outcome=outcome))
    result.apply.sort(key=lambda s: s.key.order())
    result.kept.sort(key=lambda s: s.key.order())
    result.remove.sort(key=lambda s: s.key.order(), reverse=True)
    return result


def _conflict(key: ObjectKey, member: str, live: Manifest) -> str:
    owner = owner_of(live)
    if owner.get(LABEL_MANAGED) != MANAGED_BY:
        return f"{key} exists on {member} and fleetflow does not manage it (adopt to take it over)"
    source = ", ".join(f"{k}={v}" for k, v in sorted(owner.items()) if k != LABEL_MANAGED)
    return f"{key} on {member} belongs to another fleetflow source ({source})"


def to_hold(objects: Iterable[FederatedObject], placements: Placements) -> set[str]:
    """The FederatedObjects whose member objects a pass leaves as they are: in error (like a
    workload with an invalid placement, nothing moves) or deleted with orphan."""
    return {
        fo.key
        for fo in objects
        if (fo.deleting and fo.orphan)
        or (fo.key in placements.objects and placements.objects[fo.key].error)
    }


# --- status --------------------------------------------------------------------------------

_NEVER_WRITTEN = frozenset({MemberState.CONFLICT, MemberState.MISSING_KIND})


def member_statuses(
    passes: Iterable[MemberPass],
    placements: Placements,
    *,
    unreachable: Iterable[str] = (),
    failed: Mapping[tuple[str, ObjectKey], str] | None = None,
) -> dict[str, list[MemberObjectStatus]]:
    """Per FederatedObject, its state on each member it is placed on. ``failed``: the writes
    the member refused, by (member, object), with the member's one-line reason."""
    failed = failed or {}
    found: dict[str, dict[str, MemberObjectStatus]] = {}
    for done in passes:
        for step in [*done.apply, *done.kept]:
            state = step.state
            message = failed.get((done.member, step.key))
            if message is not None:
                state = MemberState.FAILED
            if state is not None:
                found.setdefault(step.source, {})[done.member] = MemberObjectStatus(
                    name=done.member, state=state, message=message or step.message
                )
    for member in unreachable:
        for key in placements.on(member):
            found.setdefault(key, {})[member] = MemberObjectStatus(
                name=member, state=MemberState.UNREACHABLE
            )
    return {key: [by[m] for m in sorted(by)] for key, by in sorted(found.items())}


def deletion_blocked_by(fo: FederatedObject, reachable: Iterable[str]) -> list[str]:
    """A deleted FederatedObject's members that may still hold its object and cannot be
    cleaned now: its finalizer stays until they answer (or are unjoined)."""
    if not fo.deleting or fo.orphan:
        return []
    up = set(reachable)
    return sorted(
        c.name for c in fo.status.clusters if c.state not in _NEVER_WRITTEN and c.name not in up
    )


# --- StatefulSets ----------------------------------------------------------------------------

RETAIN_CLAIMS = {"whenScaled": "Retain", "whenDeleted": "Retain"}
"""A member StatefulSet's claims outlive its pods: replicas moving to another member, or the
StatefulSet leaving this one, never delete data; scaling back up finds the claims again."""


def retain_claims(manifest: Manifest) -> Manifest:
    """A copy of ``manifest``; a StatefulSet's claim retention forced to Retain, whatever the
    template or an override said."""
    result = copy.deepcopy(manifest)
    if result.get("kind") == "StatefulSet" and group_of(result.get("apiVersion", "")) == "apps":
        result.setdefault("spec", {})["persistentVolumeClaimRetentionPolicy"] = dict(RETAIN_CLAIMS)
    return result


def member_workload(
    kind: Literal["Deployment", "StatefulSet"],
    fd: FederatedDeployment,
    cluster: str,
    replicas: int | None,
    federation: str,
) -> Manifest:
    """The member's workload of ``kind`` (the template being that kind's spec): as
    ``member_deployment`` builds it, a StatefulSet's claims retained, hashed again."""
    manifest = member_deployment(fd, cluster, replicas, federation)
    if kind == "Deployment":
        return manifest
    manifest["kind"] = kind
    manifest = retain_claims(manifest)
    manifest["metadata"]["annotations"][ANNOTATION_HASH] = spec_hash(
        manifest, count=fd.spec.autoscaling is None
    )
    return manifest
