"""Per-cluster Kubernetes access: clients, server-side apply, waits. Errors are fleetflow's own
(:mod:`fleetflow.errors`): every failure names the cluster and the fix."""

from fleetflow.kube.apply import FIELD_MANAGER, apply, delete, ensure, get, list_objects
from fleetflow.kube.client import ClusterApiClient, ClusterCredentials, api_client
from fleetflow.kube.workloads import wait_deployment_ready

__all__ = [
    "FIELD_MANAGER",
    "ClusterApiClient",
    "ClusterCredentials",
    "api_client",
    "apply",
    "delete",
    "ensure",
    "get",
    "list_objects",
    "wait_deployment_ready",
]
