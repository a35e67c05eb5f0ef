"""Steps of a rebalance: read the federation, observe each member, write what changed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from kubernetes import client as k8s
from prefect import task
from pydantic import BaseModel, Field

from fleetflow.blocks import KubeCluster
from fleetflow.capacity import Resources, free, node_ready
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION
from fleetflow.errors import ClusterError, ResourceConflict
from fleetflow.federated import ANNOTATION_HASH, LABEL_WORKLOAD, FederatedDeployment
from fleetflow.kube import apply, delete, list_objects
from fleetflow.kube.workloads import deployment_ready
from fleetflow.models import Action, Verb
from fleetflow.rebalance import Observed, WorkloadPlan
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE

FD_KIND = "FederatedDeployment"
MEMBER_TASK = {k: v for k, v in CLUSTER_TASK.items() if k != "timeout_seconds"}
"""Tasks mapped over members run in worker threads, where a task timeout cannot interrupt;
their requests carry timeouts and their waits deadlines instead."""


@task(**CLUSTER_TASK)
def list_workloads(
    host: KubeCluster, namespace: str | None, name: str | None, labels: dict[str, str]
) -> list[FederatedDeployment]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items()) or None
    found = list_objects(client(host), API_VERSION, FD_KIND, namespace, selector)
    workloads = [FederatedDeployment.from_object(o) for o in found]
    return [w for w in workloads if name is None or w.name == name]


@task(**CLUSTER_TASK)
def list_members(host: KubeCluster, namespace: str, federation: str) -> list[dict[str, Any]]:
    entries = list_objects(client(host), API_VERSION, "MemberCluster", namespace)
    return [e for e in entries if e["spec"].get("federation") == federation]


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


@task(**PRIVATE)
def observe_member(block: KubeCluster | None, name: str, federation: str) -> MemberObservation:
    """One probe: nodes, pods (for free capacity) and our Deployments. Never raises for an
    unreachable member: a failed probe is an input to the health model, not an error."""
    if block is None:
        return MemberObservation(name=name, reachable=False, error="no credentials block")
    try:
        api = client(block)
        nodes = list_objects(api, "v1", "Node")
        pods = list_objects(api, "v1", "Pod")
        ours = list_objects(api, "apps/v1", "Deployment", None, f"{LABEL_FEDERATION}={federation}")
    except ClusterError as exc:
        return MemberObservation(name=name, reachable=False, error=str(exc))
    ready = sum(1 for n in nodes if node_ready(n))
    deployments = {}
    for d in ours:
        meta, status = d["metadata"], d.get("status") or {}
        deployments[f"{meta['namespace']}/{meta['name']}"] = Observed(
            replicas=d["spec"].get("replicas", 0),
            ready=min(status.get("readyReplicas", 0), d["spec"].get("replicas", 0)),
            spec_hash=(meta.get("annotations") or {}).get(ANNOTATION_HASH, ""),
        )
    return MemberObservation(
        name=name,
        reachable=True,
        nodes_ready=ready,
        nodes_total=len(nodes),
        allocatable=free(nodes, []),
        free=free(nodes, pods),
        deployments=deployments,
    )


@task(**MEMBER_TASK)
def write_member(
    block: KubeCluster,
    member: str,
    manifests: list[dict[str, Any]],
    removals: list[str],
    existing: list[str],
) -> list[Action]:
    """Apply the Deployments that changed and delete the ones no longer placed here;
    ``existing`` (namespace/name) tells a create from an update in the report."""
    api, actions = client(block), []
    for manifest in manifests:
        meta = manifest["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        try:
            apply(api, manifest)
        except ClusterError as exc:
            if exc.status != 404:
                raise
            _ensure_namespace(api, meta["namespace"])  # first workload in this namespace
            apply(api, manifest)
        actions.append(
            Action(
                cluster=member,
                kind="Deployment",
                name=meta["name"],
                namespace=meta["namespace"],
                verb=Verb.UPDATE if key in existing else Verb.CREATE,
            )
        )
    for key in removals:
        namespace, name = key.split("/", 1)
        if delete(api, "apps/v1", "Deployment", name, namespace):
            actions.append(
                Action(
                    cluster=member,
                    kind="Deployment",
                    name=name,
                    namespace=namespace,
                    verb=Verb.DELETE,
                )
            )
    return actions


def _ensure_namespace(api: Any, namespace: str) -> None:
    with contextlib.suppress(ResourceConflict):
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})


class Readiness(BaseModel):
    """Ready replicas of our Deployments in one member, and those still not ready."""

    ready: dict[str, int] = Field(default_factory=dict)
    pending: list[str] = Field(default_factory=list)


@task(**PRIVATE)
def wait_member_ready(block: KubeCluster, keys: list[str], timeout: float) -> Readiness:
    """Wait until these Deployments are ready, or the deadline; report what was seen last."""
    api, deadline = client(block), time.monotonic() + timeout
    while True:
        live = list_objects(api, "apps/v1", "Deployment", None, LABEL_WORKLOAD)
        seen = {f"{d['metadata']['namespace']}/{d['metadata']['name']}": d for d in live}
        pending = [k for k in keys if k not in seen or not deployment_ready(seen[k])]
        if not pending or time.monotonic() > deadline:
            ready = {k: (d.get("status") or {}).get("readyReplicas", 0) for k, d in seen.items()}
            return Readiness(ready=ready, pending=pending)
        time.sleep(0.5)


@task(**CLUSTER_TASK)
def write_statuses(host: KubeCluster, updates: list[dict[str, Any]]) -> int:
    """Write status subresources that changed (the caller sends only those); count them."""
    api = client(host)
    for patch in updates:
        apply(api, patch, subresource="status")
    return len(updates)


def workload_status(fd: FederatedDeployment, plan: WorkloadPlan) -> dict[str, Any] | None:
    """The FederatedDeployment's new status, or None when it would not change."""
    clusters = [
        {"name": c, "desired": n, "ready": plan.ready.get(c, 0)}
        for c, n in sorted(plan.replicas.items())
    ]
    status: dict[str, Any] = {
        "observedGeneration": fd.generation,
        "clusters": clusters,
        "unplaced": plan.unplaced,
    }
    if plan.error:
        status = {
            **fd.status,
            "observedGeneration": fd.generation,
            "conditions": [
                {"type": "Planned", "status": "False", "reason": "Invalid", "message": plan.error}
            ],
        }
    else:
        status["conditions"] = [
            {"type": "Planned", "status": "True", "reason": "Placed", "message": ""}
        ]
    if all(fd.status.get(k) == v for k, v in status.items()):
        return None
    return {
        "apiVersion": API_VERSION,
        "kind": FD_KIND,
        "metadata": {"name": fd.name, "namespace": fd.namespace},
        "status": status,
    }
