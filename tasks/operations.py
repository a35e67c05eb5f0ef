"""The operation record of a multi-phase procedure, in the host."""

from __future__ import annotations

from prefect import task

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import ResourceNotFound
from fleetflow.kube import apply, get
from fleetflow.operations import Operation
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import CLUSTER_TASK


@task(**CLUSTER_TASK)
def read_operation(host: KubeCluster, namespace: str, name: str) -> Operation | None:
    try:
        return Operation.from_object(
            get(client(host), API_VERSION, "FederationOperation", name, namespace)
        )
    except ResourceNotFound:
        return None


@task(**CLUSTER_TASK)
def save_operation(host: KubeCluster, op: Operation) -> Operation:
    """Write the record (spec, then status): each phase is durable before the next begins."""
    api = client(host)
    apply(api, op.manifest())
    apply(api, op.status_patch(), subresource="status")
    return op
