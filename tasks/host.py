"""Steps in the host cluster: CRDs, the member registry, federated workloads' status and
finalizers."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from prefect import task

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import API_VERSION, flows_token_secret
from fleetflow.errors import ResourceConflict, ResourceNotFound
from fleetflow.federated import UNASSIGNED, FederatedDeployment, HostObject, federation_selector
from fleetflow.kube import apply, get, list_objects
from fleetflow.membership import IssuedToken
from fleetflow.models import Action, Verb
from fleetflow.objects import KIND as OBJECT_KIND
from fleetflow.objects import FederatedObjects, InvalidObject
from fleetflow.polling import poll_until
from fleetflow.rebalance import HostView
from fleetflow.registry import MemberCluster, joined_status
from fleetflow.scheduling import Taint
from fleetflow.settings import settings
from fleetflow.tasks.clusters import client, cluster_name
from fleetflow.tasks.common import CLUSTER_TASK
from fleetflow.tasks.health import read_watch_lease
from fleetflow.tasks.member import wait_token
from fleetflow.tasks.traffic import list_endpoints

CRD_API = "apiextensions.k8s.io/v1"
FINALIZER_MANAGER = "fleetflow-finalizer"
"""Finalizers are applied by a field manager of their own, so that adding or dropping one can
never take over or remove fields that anyone else (or fleetflow's own manager) applied."""


@task(**CLUSTER_TASK)
def crd_exists(block: KubeCluster, name: str) -> bool:
    try:
        get(client(block), CRD_API, "CustomResourceDefinition", name)
    except ResourceNotFound:
        return False
    return True


@task(**CLUSTER_TASK)
def wait_crds_established(block: KubeCluster, names: list[str], dry_run: bool = False) -> None:
    """CRDs serve only once Established; later steps create their objects right away. A dry
    run installed none, so there is nothing to wait for."""
    if dry_run:
        return
    api = client(block)

    def pending() -> list[str]:
        crds = [get(api, CRD_API, "CustomResourceDefinition", n) for n in names]
        return [c["metadata"]["name"] for c in crds if not _established(c)]

    poll_until(
        pending,
        lambda left: not left,
        timeout=settings().setup_timeout,
        waiting_for=f"CRDs Established in {cluster_name(block)!r}",
        describe=lambda left: f"not yet: {', '.join(left)}",
    )


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@task(**CLUSTER_TASK)
def flows_token(host: KubeCluster, namespace: str, federation: str, dry_run: bool) -> IssuedToken:
    """The token of the host account day-to-day flows act as (``controlplane.worker_rbac``):
    the one there, or a new one."""
    api = k8s.CoreV1Api(client(host))
    manifest = flows_token_secret(namespace, federation)
    name = manifest["metadata"]["name"]
    try:
        api.read_namespaced_secret(name, namespace)
        created = False
    except ResourceNotFound:
        if dry_run:
            return IssuedToken(secret=name, namespace=namespace, created=True, token=None)
        with contextlib.suppress(ResourceConflict):
            api.create_namespaced_secret(namespace, manifest)
        created = True
    token = wait_token(api, namespace, name)
    return IssuedToken(secret=name, namespace=namespace, created=created, token=token)


@task(**CLUSTER_TASK)
def member_entry(block: KubeCluster, namespace: str, member: str) -> MemberCluster | None:
    """The host's registry entry for a member, or None."""
    try:
        return MemberCluster.from_object(
            get(client(block), API_VERSION, "MemberCluster", member, namespace)
        )
    except ResourceNotFound:
        return None


@task(**CLUSTER_TASK)
def list_members(host: KubeCluster, namespace: str, federation: str) -> list[MemberCluster]:
    entries = list_objects(client(host), API_VERSION, "MemberCluster", namespace)
    members = [MemberCluster.from_object(e) for e in entries]
    return [m for m in members if m.spec.federation == federation]


@task(**CLUSTER_TASK)
def list_workloads(
    host: KubeCluster,
    federation: str,
    namespace: str | None = None,
) -> list[FederatedDeployment]:
    """The federation's FederatedDeployments (of ``namespace``, or all). Every one: a run
    that acts on some plans the others as they run (what follows them stays where they are)."""
    found = list_objects(
        client(host), API_VERSION, "FederatedDeployment", namespace, federation_selector(federation)
    )
    return [FederatedDeployment.from_object(o) for o in found]


@task(**CLUSTER_TASK)
def list_federated_objects(
    host: KubeCluster, federation: str, namespace: str | None = None
) -> FederatedObjects:
    """The federation's FederatedObjects (of ``namespace``, or all); an invalid one is reported
    with its reason, never a crash."""
    found = list_objects(
        client(host), API_VERSION, OBJECT_KIND, namespace, federation_selector(federation)
    )
    return FederatedObjects.read(found)


def list_unassigned(host: KubeCluster, namespace: str | None) -> list[str]:
    """FederatedDeployments and FederatedObjects that name no federation: none propagates
    them, and the report says so, since an object that silently does nothing is a trap."""
    api = client(host)
    return sorted(
        f"{kind} {o['metadata']['namespace']}/{o['metadata']['name']}"
        for kind in ("FederatedDeployment", OBJECT_KIND)
        for o in list_objects(api, API_VERSION, kind, namespace, UNASSIGNED)
    )


@task(**CLUSTER_TASK)
def read_holds(
    host: KubeCluster, federation: str, registry_namespace: str, namespace: str | None
) -> tuple[list[MemberCluster], list[FederatedDeployment]]:
    """The members and workloads as they are now, for a run to check, before it writes, that
    what its plan depends on (fences, taints, migration holds) did not change meanwhile."""
    members = list_members.fn(host, registry_namespace, federation)
    return members, list_workloads.fn(host, federation, namespace)


@task(**CLUSTER_TASK)
def observe_host(
    host: KubeCluster,
    federation: str,
    registry_namespace: str,
    namespace: str | None = None,
) -> HostView:
    """The host as a rebalance needs it, in one task run (the reads are quick, and a run on a
    schedule should cost Prefect a task run per step that tells something, not per request)."""
    return HostView(
        workloads=list_workloads.fn(host, federation, namespace),
        objects=list_federated_objects.fn(host, federation, namespace),
        unassigned=list_unassigned(host, namespace),
        members=list_members.fn(host, registry_namespace, federation),
        watch_lease=read_watch_lease(host, registry_namespace, federation),
        endpoints=list_endpoints.fn(host, federation),
    )


@task(**CLUSTER_TASK)
def record_joined(block: KubeCluster, member: MemberCluster, version: str, dry_run: bool) -> None:
    """Record the member's version on its registry entry (a new one starts Healthy); nothing
    is sent when nothing changes."""
    if dry_run:
        return
    current = MemberCluster.from_object(
        get(client(block), API_VERSION, "MemberCluster", member.name, member.namespace)
    )
    status = joined_status(current.status, version, datetime.now(UTC))
    if status != current.status:
        apply(
            client(block),
            current.model_copy(update={"status": status}).status_patch(),
            subresource="status",
        )


@task(**CLUSTER_TASK)
def write_statuses(
    host: KubeCluster,
    changed: Sequence[MemberCluster | HostObject | InvalidObject],
    dry_run: bool,
) -> int:
    """Write the status of each object given (the caller sends only those that changed)."""
    if not dry_run:
        api = client(host)
        for obj in changed:
            apply(api, obj.status_patch(), subresource="status")
    return len(changed)


@task(**CLUSTER_TASK)
def set_finalizers(
    host: KubeCluster,
    workloads: Sequence[HostObject],
    *,
    hold: bool,
    dry_run: bool,
) -> list[Action]:
    """Add (``hold``) or drop fleetflow's finalizer on each workload or federated object."""
    api, actions = client(host), []
    for fd in workloads:
        if not dry_run:
            try:
                apply(api, fd.finalizer_patch(hold=hold), manager=FINALIZER_MANAGER)
            except ResourceNotFound:
                continue  # deleted meanwhile: nothing left to hold
        kind = f"{type(fd).__name__} finalizer"
        verb = Verb.CREATE if hold else Verb.DELETE
        actions.append(
            Action(
                cluster=cluster_name(host),
                kind=kind,
                name=fd.name,
                namespace=fd.namespace,
                verb=verb,
            )
        )
    return actions


TAINT_MANAGER = "fleetflow-taint"
"""Taints are applied by a field manager of their own: it owns ``spec.taints`` and nothing
else, so a rerun of join (which applies the rest of the spec) never lifts them."""


@task(**CLUSTER_TASK)
def set_taints(
    host: KubeCluster, member: MemberCluster, taints: list[Taint], dry_run: bool
) -> list[Action]:
    """Apply the member's whole list of taints (none: the field dropped); unchanged, nothing
    is sent."""
    if taints == member.taints:
        return []
    spec = {"taints": [t.model_dump(mode="json") for t in taints]} if taints else {}
    if not dry_run:
        apply(client(host), member.spec_patch(spec), manager=TAINT_MANAGER)
    return [
        Action(
            cluster=cluster_name(host),
            kind="MemberCluster taints",
            name=member.name,
            namespace=member.namespace,
            verb=Verb.UPDATE if taints else Verb.DELETE,
        )
    ]
