"""The one probe of a member, for the health watcher, rebalance, failover and the drill.

With the member's own credentials and the caller's timeout: ``/readyz``, then its nodes and the
federation's Deployments and StatefulSets, and, for placement, its pods (free capacity). It is a
plain call, never a task run (the watcher makes one per member every two seconds), and it never
raises: a failed probe is an input to the health model, not an error.
"""

from __future__ import annotations

from typing import Any

from fleetflow.autoscaling import Autoscaler, read_autoscaler
from fleetflow.blocks import KubeCluster
from fleetflow.capacity import free, node_ready
from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.errors import ClusterForbidden, FleetflowError
from fleetflow.federated import ANNOTATION_HASH, HPA_API_VERSION
from fleetflow.kube import api_client, list_objects
from fleetflow.kube.probe import readyz
from fleetflow.kube.workloads import member_workloads, workload_ready
from fleetflow.rebalance import Observed
from fleetflow.watch import Probe


def probe_member(
    block: KubeCluster | None,
    name: str,
    federation: str,
    timeout: float,
    *,
    capacity: bool = False,
) -> Probe:
    """Probe one member; with ``capacity``, also list its pods and describe our workloads as
    placement reads them."""
    if block is None:
        return Probe(name=name, error="no credentials block")
    try:
        credentials = block.credentials().model_copy(update={"request_timeout": timeout})
        ready = readyz(credentials, timeout)
        if not ready.ok:
            return Probe(name=name, error=ready.detail, seconds=ready.seconds)
        api = api_client(credentials)
        nodes = list_objects(api, "v1", "Node")
        pods = list_objects(api, "v1", "Pod") if capacity else []
        ours = member_workloads(api, f"{LABEL_FEDERATION}={federation}")
        hpas = _autoscalers(api, federation) if capacity else {}
    except FleetflowError as exc:
        return Probe(name=name, error=str(exc))
    return Probe(
        name=name,
        api_ready=True,
        nodes_ready=sum(1 for n in nodes if node_ready(n)),
        nodes_total=len(nodes),
        allocatable=free(nodes, []),
        workloads=len(ours),
        workloads_ready=sum(1 for w in ours if workload_ready(w)),
        seconds=ready.seconds,
        free=free(nodes, pods) if capacity else None,
        deployments={_key(w): _observed(w) for w in ours} if capacity else {},
        autoscalers=hpas,
    )


def _autoscalers(api: Any, federation: str) -> dict[str, Autoscaler]:
    """The federation's HPAs on the member. A member joined before fleetflow wrote HPAs may
    not grant reading them: none, and a write there says why."""
    selector = f"{LABEL_FEDERATION}={federation}"
    try:
        found = list_objects(api, HPA_API_VERSION, "HorizontalPodAutoscaler", None, selector)
    except ClusterForbidden:
        return {}
    return {_key(h): read_autoscaler(h, _hash(h)) for h in found}


def _hash(obj: dict[str, Any]) -> str:
    return str((obj["metadata"].get("annotations") or {}).get(ANNOTATION_HASH, ""))


def _key(workload: dict[str, object]) -> str:
    meta = workload["metadata"]
    assert isinstance(meta, dict)
    return f"{meta['namespace']}/{meta['name']}"


def _observed(workload: dict[str, object]) -> Observed:
    meta, spec = workload["metadata"], workload["spec"]
    status = workload.get("status") or {}
    assert isinstance(meta, dict) and isinstance(spec, dict) and isinstance(status, dict)
    replicas = spec.get("replicas", 0)
    return Observed(
        kind=str(workload["kind"]),
        replicas=replicas,
        ready=min(status.get("readyReplicas", 0), replicas),
        spec_hash=(meta.get("annotations") or {}).get(ANNOTATION_HASH, ""),
    )
