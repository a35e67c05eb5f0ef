"""Propagation in the members: one task per member and phase, whatever the number of objects.

The first phase asks the member which kinds it serves, lists its objects of the federated kinds
that carry this federation's label (Secrets only in the namespaces it was joined for: its token
may read no others), reads by name only the desired objects the lists did not return (to tell
an absent object from someone else's), decides with ``member_pass``, and writes: what the
workloads need, the workloads' scale-ups, then what needs the workloads. The second phase, after
the workloads are Ready, scales workloads down and removes what is no longer placed there.
"""

from __future__ import annotations

from typing import Any

from prefect import task, unmapped
from pydantic import Field

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import LABEL_FEDERATION, Manifest
from fleetflow.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterTimeout,
    ClusterUnreachable,
    ResourceNotFound,
)
from fleetflow.kube import delete, get, list_objects
from fleetflow.kube.discovery import served_kinds
from fleetflow.membership import names
from fleetflow.models import Action, Verb
from fleetflow.objects import LABEL_OBJECT, group_of
from fleetflow.propagation import MemberPass, ObjectKey, Outcome, Step, member_pass
from fleetflow.rebalance import MemberView
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import MEMBER_TASK
from fleetflow.tasks.rebalance import (
    MemberResults,
    apply_in_namespace,
    existing_workloads,
    write_workloads,
)
from fleetflow.writes import (
    FailedWrite,
    MemberPropagation,
    MemberWork,
    MemberWrites,
    Removal,
    claims_kept,
)

MEMBER_DOWN = (ClusterUnreachable, ClusterTimeout)
"""Errors that say the member, not one object, is in trouble: the task fails (and retries).
Any other refusal (a bad field, a quota, a 500 for that object) is that object's failure,
reported on its status and tried again next run, while the member's other objects go on."""

_WORKLOAD_RANK = ObjectKey(group="apps", kind="Deployment", namespace="", name="").rank
"""Objects ranked before the workloads are what they need; those after need them."""


def _secret(api_version: str, kind: str) -> bool:
    return kind == "Secret" and group_of(api_version) == ""


def _live(
    api: Any, federation: str, work: MemberWork, served: dict[tuple[str, str], bool]
) -> tuple[list[Manifest], dict[tuple[str, str], str]]:
    """The member's objects that decide this pass: ours of every federated kind it serves (of
    the FederatedObjects this run read), and any object (ours or not) that has the name of one
    we want. Kinds the token may not list come back with why."""
    selector = f"{LABEL_FEDERATION}={federation},{LABEL_OBJECT}"
    sources = set(work.sources)
    live: list[Manifest] = []
    forbidden: dict[tuple[str, str], str] = {}
    for api_version, kind in work.kinds:
        if (api_version, kind) not in served:
            continue
        scopes = work.secret_namespaces if _secret(api_version, kind) else [None]
        try:
            for namespace in scopes:
                for item in list_objects(api, api_version, kind, namespace, selector):
                    meta = item["metadata"]
                    if f"{meta['namespace']}/{meta['labels'][LABEL_OBJECT]}" in sources:
                        live.append({**item, "apiVersion": api_version, "kind": kind})
        except ClusterForbidden as exc:
            forbidden[(api_version, kind)] = _forbidden(federation, kind, exc)
    seen = {ObjectKey.of(m) for m in live}
    for want in work.desired:
        m = want.manifest
        pair = (m["apiVersion"], m["kind"])
        if pair not in served or pair in forbidden or ObjectKey.of(m) in seen:
            continue
        meta = m["metadata"]
        try:
            found = get(api, m["apiVersion"], m["kind"], meta["name"], meta["namespace"])
        except ResourceNotFound:
            continue
        live.append({**found, "apiVersion": m["apiVersion"], "kind": m["kind"]})
    return live, forbidden


def _forbidden(federation: str, kind: str, exc: ClusterError) -> str:
    n = names(federation)
    return (
        f"the member's token may not read {kind}s ({exc.detail}); a member admin grants a "
        f"custom kind by labelling a ClusterRole that allows it {n.aggregate_label}=true"
    )


@task(**MEMBER_TASK)
def propagate_member(
    block: KubeCluster,
    member: str,
    federation: str,
    work: MemberWork,
    workloads: MemberWrites,
    existing: dict[str, str],
    dry_run: bool,
) -> MemberPropagation:
    """The first phase in one member (with ``dry_run``, only say what it would write)."""
    api = client(block)
    served = served_kinds(api, {v for v, _ in work.kinds}) if not work.empty else {}
    live, forbidden = _live(api, federation, work, served) if not work.empty else ([], {})
    passed = member_pass(member, federation, work.desired, live, hold=work.hold, kinds=served)
    passed = claims_kept(passed, work.deleting)
    result = MemberPropagation(member=member, passed=passed)
    versions = {ObjectKey.of(m): m["apiVersion"] for m in live}
    result.removals = [
        Removal(key=s.key, api_version=versions[s.key], source=s.source) for s in passed.remove
    ]
    before = [s for s in passed.apply if s.key.rank < _WORKLOAD_RANK]
    after = [s for s in passed.apply if s.key.rank >= _WORKLOAD_RANK]
    for step in before:
        _write(api, member, step, forbidden, dry_run, result)
    result.actions += write_workloads(api, member, workloads, existing, dry_run)
    for step in after:
        _write(api, member, step, forbidden, dry_run, result)
    return result


def _write(
    api: Any,
    member: str,
    step: Step,
    forbidden: dict[tuple[str, str], str],
    dry_run: bool,
    result: MemberPropagation,
) -> None:
    """Apply one object; a refusal is that object's failure (the rest go on); an unreachable
    member fails the task, which retries."""
    manifest = step.manifest
    assert manifest is not None  # an apply step always carries what to apply
    reason = forbidden.get((manifest["apiVersion"], manifest["kind"]))
    if reason is None and not dry_run:
        try:
            apply_in_namespace(api, manifest)
        except MEMBER_DOWN:
            raise
        except ClusterError as exc:
            reason = str(exc)
    if reason is not None:
        result.failed.append(FailedWrite(key=step.key, source=step.source, message=reason))
        return
    verb = Verb.CREATE if step.outcome is Outcome.CREATE else Verb.UPDATE
    result.actions.append(Action.of(member, manifest, verb))


@task(**MEMBER_TASK)
def finish_member(
    block: KubeCluster,
    member: str,
    workloads: MemberWrites,
    removals: list[Removal],
    existing: dict[str, str],
    dry_run: bool,
) -> MemberPropagation:
    """The second phase in one member: scale-downs and removals of workloads, then of the
    objects no longer placed here (most dependent first)."""
    api = client(block)
    result = MemberPropagation(member=member, passed=MemberPass(member=member))
    result.actions += write_workloads(api, member, workloads, existing, dry_run)
    for removal in removals:
        key = removal.key
        try:
            gone = dry_run or delete(api, removal.api_version, key.kind, key.name, key.namespace)
        except MEMBER_DOWN:
            raise
        except ClusterError as exc:
            result.failed.append(FailedWrite(key=key, source=removal.source, message=str(exc)))
            continue
        if gone:
            result.actions.append(
                Action(
                    cluster=member,
                    kind=key.kind,
                    name=key.name,
                    namespace=key.namespace,
                    verb=Verb.DELETE,
                )
            )
    return result


class Propagated(MemberResults):
    """What a phase did in every member."""

    results: dict[str, MemberPropagation] = Field(default_factory=dict)

    def failed_sources(self) -> set[str]:
        return {f.source for r in self.results.values() for f in r.failed}


def propagate_members(
    blocks: dict[str, KubeCluster | None],
    federation: str,
    work: dict[str, MemberWork],
    ups: dict[str, MemberWrites],
    members: dict[str, MemberView],
    dry_run: bool,
) -> Propagated:
    """The first phase, one task per member with anything to check or write; a failing member
    does not stop the rest."""
    todo = [m for m in sorted({*work, *ups}) if blocks.get(m) is not None]
    futures = propagate_member.map(
        [blocks[m] for m in todo],
        todo,
        unmapped(federation),
        [work.get(m, MemberWork()) for m in todo],
        [ups.get(m, MemberWrites()) for m in todo],
        [existing_workloads(members[m]) for m in todo],
        unmapped(dry_run),
    )
    return _gather(todo, futures)


def finish_members(
    blocks: dict[str, KubeCluster | None],
    downs: dict[str, MemberWrites],
    removals: dict[str, list[Removal]],
    members: dict[str, MemberView],
    dry_run: bool,
) -> Propagated:
    """The second phase, one task per member with anything to take away."""
    todo = [
        m
        for m in sorted({*downs, *(m for m, r in removals.items() if r)})
        if blocks.get(m) is not None
    ]
    futures = finish_member.map(
        [blocks[m] for m in todo],
        todo,
        [downs.get(m, MemberWrites()) for m in todo],
        [removals.get(m, []) for m in todo],
        [existing_workloads(members[m]) for m in todo],
        unmapped(dry_run),
    )
    return _gather(todo, futures)


def _gather(todo: list[str], futures: Any) -> Propagated:
    done = Propagated()
    for member, future in zip(todo, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            done.failed[member] = str(outcome)
        else:
            done.results[member] = outcome
            done.actions += outcome.actions
    return done
