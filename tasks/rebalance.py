"""Steps of a rebalance in the members: observe each one, write what changed, wait for Ready."""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes import client as k8s
from prefect import task, unmapped
from pydantic import BaseModel, Field

from fleetflow.admission import ANNOTATION_POD_SECURITY, PodSecurity, room_labels
from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.errors import InvalidResource, ResourceConflict, ResourceNotFound, WaitTimeout
from fleetflow.federated import HPA_API_VERSION, LABEL_WORKLOAD
from fleetflow.kube import apply, delete
from fleetflow.kube.workloads import member_workloads, workload_ready
from fleetflow.membership import names
from fleetflow.models import Action, Verb
from fleetflow.polling import poll_until
from fleetflow.rebalance import MemberObservation, MemberView
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import MEMBER_TASK, PRIVATE
from fleetflow.tasks.probe import probe_member
from fleetflow.writes import MemberWrites, Readiness

HPA_KIND = "HorizontalPodAutoscaler"


@task(**PRIVATE)
def observe_member(block: KubeCluster | None, name: str, federation: str) -> MemberObservation:
    """The member probed for placement (``fleetflow.tasks.probe``): its health, free capacity
    and our workloads. Never raises for an unreachable member."""
    timeout = block.request_timeout if block is not None else 10.0
    return probe_member(block, name, federation, timeout, capacity=True).observation()


@task(**MEMBER_TASK)
def write_member(
    block: KubeCluster,
    member: str,
    writes: MemberWrites,
    existing: dict[str, str],
    dry_run: bool,
) -> list[Action]:
    """Apply the workloads that changed and delete the ones no longer placed here (with
    ``dry_run``, only say so); ``existing`` (namespace/name -> kind) tells a create from an
    update, and which kind to delete."""
    return write_workloads(client(block), member, writes, existing, dry_run)


def write_workloads(
    api: Any, member: str, writes: MemberWrites, existing: dict[str, str], dry_run: bool
) -> list[Action]:
    """``write_member``'s work, for tasks that do more in the same member."""
    actions = []
    for key in writes.unscale:
        namespace, name = key.split("/", 1)
        if dry_run or delete(api, HPA_API_VERSION, HPA_KIND, name, namespace):
            actions.append(_action(member, HPA_KIND, namespace, name, Verb.DELETE))
    for manifest in writes.apply:
        meta = manifest["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        seed = writes.seeds.get(key)
        if not dry_run:
            if seed is not None and key in existing:
                _hand_over(api, manifest, seed)
            apply_in_namespace(api, manifest)
            if seed is not None and key not in existing:
                _hand_over(api, manifest, seed)
        verb = Verb.UPDATE if key in existing else Verb.CREATE
        actions.append(_action(member, manifest["kind"], meta["namespace"], meta["name"], verb))
    for manifest in writes.autoscalers:
        meta = manifest["metadata"]
        if not dry_run:
            apply(api, manifest)
        key = f"{meta['namespace']}/{meta['name']}"
        verb = Verb.CREATE if key in writes.new_autoscalers else Verb.UPDATE
        actions.append(_action(member, HPA_KIND, meta["namespace"], meta["name"], verb))
    for key in writes.remove:
        namespace, name = key.split("/", 1)
        kind = existing.get(key, "Deployment")
        if dry_run or delete(api, "apps/v1", kind, name, namespace):
            actions.append(_action(member, kind, namespace, name, Verb.DELETE))
    return actions


SCALE_MANAGER = "fleetflow-autoscaling"
"""The field manager that holds an autoscaled workload's count until its HPA takes it over."""


def _hand_over(api: Any, manifest: dict[str, Any], replicas: int) -> None:
    """Hold the workload's count under ``SCALE_MANAGER``, so that fleetflow's own apply can
    leave it out without the server dropping it (a field no manager holds is reset: a
    Deployment to 1 replica). Not forced: a conflict means another manager, the HPA, holds the
    count already, and then there is nothing to hand over."""
    meta = manifest["metadata"]
    scale = {
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {"replicas": replicas},
    }
    with contextlib.suppress(ResourceConflict):
        apply(api, scale, force=False, manager=SCALE_MANAGER)


def _action(member: str, kind: str, namespace: str, name: str, verb: Verb) -> Action:
    return Action(cluster=member, kind=kind, name=name, namespace=namespace, verb=verb)


def apply_in_namespace(api: Any, manifest: dict[str, Any]) -> None:
    """Server-side apply, opening the namespace first when it is missing on the member: a new
    namespace, a room of the federation the manifest is labelled for, at the Pod Security level
    join noted on the federation's own namespace there (the only one the member's admission
    policy lets this account give it)."""
    try:
        apply(api, manifest)
    except ResourceNotFound:  # the first workload in this namespace
        federation = manifest["metadata"]["labels"][LABEL_FEDERATION]
        own = k8s.CoreV1Api(api).read_namespace(names(federation).namespace)
        noted = (own.metadata.annotations or {}).get(ANNOTATION_POD_SECURITY)
        level = PodSecurity(noted) if noted else PodSecurity.RESTRICTED
        labels = room_labels(federation, level)
        with contextlib.suppress(ResourceConflict):
            k8s.CoreV1Api(api).create_namespace(
                {"metadata": {"name": manifest["metadata"]["namespace"], "labels": labels}}
            )
        apply(api, manifest)


@task(**PRIVATE)
def wait_member_ready(
    block: KubeCluster, keys: dict[str, int], timeout: float, dry_run: bool
) -> Readiness:
    """Wait until these workloads are ready, each with at least its count of Ready replicas,
    or the deadline; report what was seen last. A dry run changed nothing, so there is nothing
    to wait for."""
    if dry_run:
        return Readiness()
    api = client(block)

    def look() -> Readiness:
        live = member_workloads(api, LABEL_WORKLOAD)
        seen = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in live}
        return Readiness(
            ready={k: (d.get("status") or {}).get("readyReplicas", 0) for k, d in seen.items()},
            pending=[
                k
                for k, at_least in keys.items()
                if k not in seen
                or not workload_ready(seen[k])
                or (seen[k].get("status") or {}).get("readyReplicas", 0) < at_least
            ],
        )

    try:
        return poll_until(
            look,
            lambda r: not r.pending,
            timeout=timeout,
            interval=0.25,  # a failover's traffic waits on this: one list per member per poll
            waiting_for=f"workloads Ready in {block._block_document_name}",
        )
    except WaitTimeout as exc:  # not Ready in time: the caller holds the scale-downs back
        return exc.last if isinstance(exc.last, Readiness) else Readiness(pending=keys)


@task(**MEMBER_TASK)
def check_autoscalers(block: KubeCluster, manifests: list[dict[str, Any]]) -> dict[str, str]:
    """Whether the member's API accepts each HPA, by a server-side dry run (nothing is
    written): the metrics and behavior are the HPA API's to judge, and its answer comes before
    any write of the workload. The dry run goes to the federation's own namespace there, which
    every joined member has (and the member's admission policy lets the account write in), so
    that a workload new to a namespace can be checked too. By namespace/name: why it was
    refused."""
    api, refused = client(block), {}
    for manifest in manifests:
        meta = manifest["metadata"]
        own = names(meta["labels"][LABEL_FEDERATION]).namespace
        probe = {**manifest, "metadata": {**meta, "namespace": own}}
        try:
            apply(api, probe, dry_run=True)
        except InvalidResource as exc:
            refused[f"{meta['namespace']}/{meta['name']}"] = exc.detail
    return refused


def check_members_autoscalers(
    blocks: dict[str, KubeCluster | None], manifests: dict[str, list[dict[str, Any]]]
) -> dict[str, str]:
    """``check_autoscalers`` in every member with HPAs to write, at once; by workload, the
    first refusal, naming the member."""
    todo = [m for m, found in manifests.items() if found and blocks.get(m) is not None]
    futures = check_autoscalers.map([blocks[m] for m in todo], [manifests[m] for m in todo])
    refused: dict[str, str] = {}
    for member, future in zip(todo, futures, strict=True):
        for key, why in future.result().items():
            refused.setdefault(key, f"{key}: {member}'s HPA API refuses the autoscaling: {why}")
    return refused


class MemberResults(BaseModel):
    """What a fan-out of writes did, and the members where it failed (retried next run)."""

    actions: list[Action] = Field(default_factory=list)
    failed: dict[str, str] = Field(default_factory=dict)

    def notes(self) -> list[str]:
        return [f"{m}: writes failed, retried next run: {e}" for m, e in self.failed.items()]


def probe_members(
    blocks: dict[str, KubeCluster | None], federation: str
) -> dict[str, MemberObservation]:
    """Probe every member at once."""
    futures = observe_member.map(list(blocks.values()), list(blocks), unmapped(federation))
    return {o.name: o for o in futures.result()}


def write_members(
    blocks: dict[str, KubeCluster | None],
    writes: dict[str, MemberWrites],
    members: dict[str, MemberView],
    dry_run: bool,
) -> MemberResults:
    """One task per member with something to write; a failing member does not stop the rest."""
    todo = [m for m in writes if blocks.get(m) is not None]
    futures = write_member.map(
        [blocks[m] for m in todo],
        todo,
        [writes[m] for m in todo],
        [existing_workloads(members[m]) for m in todo],
        unmapped(dry_run),
    )
    results = MemberResults()
    for member, future in zip(todo, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            results.failed[member] = str(outcome)
        else:
            results.actions += outcome
    return results


def existing_workloads(member: MemberView) -> dict[str, str]:
    """The workloads a member runs for the federation: namespace/name -> kind."""
    return {k: o.kind for k, o in member.deployments.items()}


def wait_members_ready(
    blocks: dict[str, KubeCluster | None],
    keys: dict[str, dict[str, int]],
    timeout: float,
    dry_run: bool,
) -> dict[str, Readiness]:
    """Wait, in every member at once, for these workloads (namespace/name) to turn Ready with
    at least their counts of Ready replicas."""
    todo = [m for m, k in keys.items() if k and blocks.get(m) is not None]
    futures = wait_member_ready.map(
        [blocks[m] for m in todo], [keys[m] for m in todo], unmapped(timeout), unmapped(dry_run)
    )
    return dict(zip(todo, futures.result(), strict=True))
