"""Per-cluster Kubernetes access: clients, server-side apply, scale, wait, clear errors."""

from fleetflow.kube.apply import FIELD_MANAGER, apply, delete, ensure, get, list_objects
from fleetflow.kube.client import ClusterApiClient, ClusterCredentials, api_client
from fleetflow.kube.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterTimeout,
    ClusterTLSError,
    ClusterUnauthorized,
    ClusterUnreachable,
    CredentialsError,
    ResourceConflict,
    ResourceNotFound,
    WaitTimeout,
)
from fleetflow.kube.workloads import scale, wait_deployment_ready

__all__ = [
    "FIELD_MANAGER",
    "ClusterApiClient",
    "ClusterCredentials",
    "ClusterError",
    "ClusterForbidden",
    "ClusterTLSError",
    "ClusterTimeout",
    "ClusterUnauthorized",
    "ClusterUnreachable",
    "CredentialsError",
    "ResourceConflict",
    "ResourceNotFound",
    "WaitTimeout",
    "api_client",
    "apply",
    "delete",
    "ensure",
    "get",
    "list_objects",
    "scale",
    "wait_deployment_ready",
]
