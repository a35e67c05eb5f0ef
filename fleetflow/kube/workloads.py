"""When a Deployment (or StatefulSet) is Ready, and a watch that waits for a Deployment with a
deadline."""

from __future__ import annotations

import time
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from fleetflow.errors import ClusterError, WaitTimeout
from fleetflow.kube.apply import list_objects
from fleetflow.kube.client import ClusterApiClient
from fleetflow.kube.translate import translate

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def member_workloads(api: Any, selector: str) -> list[dict[str, Any]]:
    """Our Deployments and StatefulSets in a member, each with its kind filled in (a list's
    items come without it)."""
    found = []
    for kind in WORKLOAD_KINDS:
        for item in list_objects(api, "apps/v1", kind, None, selector):
            found.append({**item, "apiVersion": "apps/v1", "kind": kind})
    return found


def deployment_ready(obj: dict[str, Any]) -> bool:
    """Ready: the controller has seen the latest spec and every replica is updated and ready."""
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    want = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def statefulset_ready(obj: dict[str, Any]) -> bool:
    """Ready: the controller has seen the latest spec, and every replica is ready and runs the
    current revision."""
    spec, status = obj.get("spec", {}), obj.get("status") or {}
    want = spec.get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= obj["metadata"].get("generation", 0)
        and status.get("readyReplicas", 0) == want
        and status.get("replicas", 0) == want
        and status.get("updatedReplicas", 0) == want
    )


def workload_ready(obj: dict[str, Any]) -> bool:
    """Ready, as its kind defines it."""
    if obj.get("kind") == "StatefulSet":
        return statefulset_ready(obj)
    return deployment_ready(obj)


def wait_deployment_ready(
    client: ClusterApiClient, namespace: str, name: str, *, timeout: float
) -> dict[str, Any]:
    """Watch one Deployment until it is ready; raise :class:`WaitTimeout` past the deadline.

    A watch, not a poll: the apiserver pushes each status change, so the wait ends as soon as the
    condition holds. The watch is re-opened if the server closes it before the deadline.
    """
    apps = k8s.AppsV1Api(client)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while (remaining := deadline - time.monotonic()) > 0:
        stream = watch.Watch().stream(
            apps.list_namespaced_deployment,
            namespace,
            field_selector=f"metadata.name={name}",
            timeout_seconds=max(1, int(remaining)),
            _request_timeout=(client.timeout, remaining + client.timeout),
        )
        try:
            for event in stream:
                last = client.sanitize_for_serialization(event["object"])
                if deployment_ready(last):
                    return last
        except (ClusterError, ApiException) as exc:
            if exc.status != 410:  # 410 Gone: the watch expired; start a new one
                raise translate(client.cluster, exc) from exc
    status = last.get("status") or {}
    wanted = (last.get("spec") or {}).get("replicas", "?")
    raise WaitTimeout(
        f"cluster {client.cluster!r}: deployment {namespace}/{name} not ready after {timeout:g}s "
        f"(ready {status.get('readyReplicas', 0)}/{wanted}); "
        "check the member's nodes and capacity, or give it more time"
    )
