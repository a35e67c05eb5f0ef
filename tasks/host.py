"""Steps in the host cluster: CRDs, the member registry, the Federation block."""

from __future__ import annotations

import time
from typing import Any

from prefect import task

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.fields import save_if_changed
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import ResourceNotFound, WaitTimeout
from fleetflow.health import HealthState
from fleetflow.kube.apply import apply, get
from fleetflow.membership import member_status
from fleetflow.models import Action, Verb
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE

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
def set_member_status(block: KubeCluster, entry: dict[str, Any], *, version: str) -> None:
    """Record the member's version on its registry entry; a new entry starts Healthy (the probes
    of the rebalance flow own its health from then on). Nothing is sent when nothing changes."""
    meta = entry["metadata"]
    current = get(client(block), API_VERSION, "MemberCluster", meta["name"], meta["namespace"])
    health = None if (current.get("status") or {}).get("health") else HealthState()
    patch = member_status(current, health, kubernetesVersion=version)
    if patch["status"] != current.get("status"):
        apply(client(block), patch, subresource="status")


@task(**PRIVATE)
def save_federation(federation: Federation, block_name: str, dry_run: bool = False) -> Action:
    """Save the Federation block unless the stored one already says the same."""
    verb = Verb(save_if_changed(federation, block_name, dry_run=dry_run))
    return Action(cluster="prefect", kind="Federation block", name=block_name, verb=verb)
