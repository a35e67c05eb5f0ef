"""The operation record of a multi-phase procedure, in the host."""

from __future__ import annotations

from prefect import task

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION
from fleetflow.errors import RecordChanged, ResourceConflict, ResourceNotFound
from fleetflow.kube import apply, get, list_objects
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
def list_operations(host: KubeCluster, namespace: str, federation: str) -> list[Operation]:
    """Every operation record of the federation."""
    selector = f"{LABEL_FEDERATION}={federation}"
    found = list_objects(client(host), API_VERSION, "FederationOperation", namespace, selector)
    return [Operation.from_object(o) for o in found]


@task(**CLUSTER_TASK)
def save_operation(host: KubeCluster, op: Operation) -> Operation:
    """Write the record (spec, then status), each write conditional on the version the run
    last saw: each phase is durable before the next begins, and a run never overwrites what
    another run wrote meanwhile. Returns the record at its new version."""
    api = client(host)
    try:
        live = apply(api, op.manifest())
        op = op.model_copy(update={"resource_version": live["metadata"]["resourceVersion"]})
        live = apply(api, op.status_patch(), subresource="status")
    except ResourceConflict as exc:
        raise RecordChanged(
            f"operation record {op.namespace}/{op.name} changed since this run read it (another "
            "run wrote it): this run stops here; a rerun resumes from the record"
        ) from exc
    return op.model_copy(update={"resource_version": live["metadata"]["resourceVersion"]})
