"""Steps in the host cluster: CRDs, the member registry, the Federation block."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from prefect import task

from blocks import Federation, KubeCluster
from blocks.fields import save_if_changed
from fleetflow.controlplane import API_VERSION
from fleetflow.kube import ResourceNotFound, WaitTimeout
from fleetflow.kube.apply import apply, get
from fleetflow.models import Action, Verb
from tasks.clusters import client
from tasks.common import CLUSTER_TASK, PRIVATE

CRD_API = "apiextensions.k8s.io/v1"


@task(**CLUSTER_TASK)
def crd_exists(block: KubeCluster, name: str) -> bool:
    try:
        get(client(block), CRD_API, "CustomResourceDefinition", name)
    except ResourceNotFound:
        return False
    return True


@task(**CLUSTER_TASK)
def wait_crds_established(block: KubeCluster, names: list[str], timeout: float = 60) -> None:
    """CRDs serve only once Established; later steps create their objects right away."""
    api, deadline = client(block), time.monotonic() + timeout
    pending = list(names)
    while pending:
        pending = [
            n for n in pending if not _established(get(api, CRD_API, "CustomResourceDefinition", n))
        ]
        if pending and time.monotonic() > deadline:
            raise WaitTimeout(f"CRDs not Established after {timeout:g}s: {', '.join(pending)}")
        if pending:
            time.sleep(0.2)


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@task(**CLUSTER_TASK)
def member_entry(block: KubeCluster, namespace: str, member: str) -> dict[str, Any] | None:
    """The host's registry entry for a member, or None."""
    try:
        entry: dict[str, Any] = get(client(block), API_VERSION, "MemberCluster", member, namespace)
    except ResourceNotFound:
        return None
    return entry


@task(**CLUSTER_TASK)
def set_member_status(
    block: KubeCluster, entry: dict[str, Any], *, healthy: bool, version: str
) -> None:
    """Record the member's version and health on its registry entry (status subresource)."""
    meta = entry["metadata"]
    current = get(client(block), API_VERSION, "MemberCluster", meta["name"], meta["namespace"])
    conditions = (current.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c["type"] == "Ready"), None)
    state = "True" if healthy else "False"
    since = ready["lastTransitionTime"] if ready and ready["status"] == state else _now()
    status = {
        "kubernetesVersion": version,
        "health": "Healthy" if healthy else "Unhealthy",
        "conditions": [
            {
                "type": "Ready",
                "status": state,
                "reason": "Joined" if healthy else "Unreachable",
                "message": "",
                "lastTransitionTime": since,
            }
        ],
    }
    patch = {
        "apiVersion": API_VERSION,
        "kind": "MemberCluster",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "status": status,
    }
    apply(client(block), patch, subresource="status")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@task(**PRIVATE)
def save_federation(federation: Federation, block_name: str, dry_run: bool = False) -> Action:
    """Save the Federation block unless the stored one already says the same."""
    verb = Verb(save_if_changed(federation, block_name, dry_run=dry_run))
    return Action(cluster="prefect", kind="Federation block", name=block_name, verb=verb)
