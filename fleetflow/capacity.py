"""Free capacity of a member, in replicas of a workload: node allocatable minus pod requests.

Pure: it takes the nodes and pods as the API returns them (plain dicts).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel, ConfigDict

RESOURCES = ("cpu", "memory", "pods")


class Resources(BaseModel):
    """Amounts in base units: CPU in millicores, memory in bytes, a count of pods."""

    model_config = ConfigDict(frozen=True)

    cpu: int = 0
    memory: int = 0
    pods: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            cpu=self.cpu + other.cpu, memory=self.memory + other.memory, pods=self.pods + other.pods
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            cpu=self.cpu - other.cpu, memory=self.memory - other.memory, pods=self.pods - other.pods
        )


def quantities(values: Mapping[str, Any] | None, pods: int = 0) -> Resources:
    """CPU, memory and pods from a Kubernetes resource list (``{"cpu": "500m", ...}``)."""
    values = values or {}
    cpu = parse_quantity(values.get("cpu", "0")) * 1000
    memory = parse_quantity(values.get("memory", "0"))
    count = int(parse_quantity(values["pods"])) if "pods" in values else pods
    return Resources(cpu=int(cpu), memory=int(memory), pods=count)


def node_ready(node: Mapping[str, Any]) -> bool:
    """Ready and schedulable: a node that counts for placement."""
    conditions = (node.get("status") or {}).get("conditions") or []
    unschedulable = (node.get("spec") or {}).get("unschedulable", False)
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready and not unschedulable


def pod_requests(pod_spec: Mapping[str, Any]) -> Resources:
    """What the scheduler reserves for one pod: the sum over its containers, at least the
    largest init container, and one pod slot."""
    containers = [
        quantities((c.get("resources") or {}).get("requests"))
        for c in pod_spec.get("containers", [])
    ]
    total = sum(containers, Resources())
    for init in pod_spec.get("initContainers") or []:
        need = quantities((init.get("resources") or {}).get("requests"))
        total = Resources(cpu=max(total.cpu, need.cpu), memory=max(total.memory, need.memory))
    return Resources(cpu=total.cpu, memory=total.memory, pods=1)


def free(nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]) -> Resources:
    """Allocatable of Ready, schedulable nodes minus the requests of the pods bound to them."""
    ready = {n["metadata"]["name"]: n for n in nodes if node_ready(n)}
    total = sum(
        (quantities((n.get("status") or {}).get("allocatable")) for n in ready.values()),
        Resources(),
    )
    used = sum(
        (
            pod_requests(p.get("spec") or {})
            for p in pods
            if (p.get("spec") or {}).get("nodeName") in ready
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ),
        Resources(),
    )
    return total - used


def replicas_that_fit(available: Resources, per_replica: Resources) -> int:
    """How many more replicas of this shape the free resources hold (never negative)."""
    fits = [
        getattr(available, r) // getattr(per_replica, r)
        for r in RESOURCES
        if getattr(per_replica, r) > 0
    ]
    return max(0, min(fits)) if fits else 0
