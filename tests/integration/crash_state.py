"""The crash matrix's view of a federation after a run: the host's objects, every member's
objects with their replicas, owners and finalizers, the operation records' phases, the leases,
the blocks, the data's checksums and the DNS server's answers, names made neutral so that two
runs in different namespaces compare equal."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION
from fleetflow.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterThrottled,
    ClusterUnauthorized,
    ResourceNotFound,
)
from fleetflow.kube import ClusterApiClient, api_client, get, list_objects
from fleetflow.lease import LEASE_API, Lease
from fleetflow.membership import member_manifests, names
from fleetflow.operations import Phase as OperationPhase
from fleetflow.resolve import lookup
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.testbed.volumes import claim_directories

MEMBER_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)


MARKS = {p.value for p in OperationPhase}
"""What a record's steps also hold besides phases: how a run ended (Failed, with why)."""


def admin(cluster: str, timeout: float = 5.0) -> ClusterApiClient:
    return api_client(bed.credentials(cluster).model_copy(update={"request_timeout": timeout}))


@dataclass
class World:
    """Where one case runs: a federation (with its host namespace) and a namespace of its own."""

    testbed: TestbedSpec
    federation: str
    namespace: str

    @property
    def system(self) -> str:
        return f"{self.federation}-system"

    def host(self) -> ClusterApiClient:
        return admin(self.testbed.host)


def _neutral(state: Any, world: World) -> Any:
    text = json.dumps(state, sort_keys=True)
    text = text.replace(world.namespace, "NAMESPACE").replace(world.federation, "FEDERATION")
    return json.loads(text)


def _owners(meta: dict[str, Any]) -> list[str]:
    return sorted(f"{o['kind']}/{o['name']}" for o in meta.get("ownerReferences") or [])


def _object(obj: dict[str, Any]) -> dict[str, Any]:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    found: dict[str, Any] = {
        "owners": _owners(meta),
        "finalizers": sorted(meta.get("finalizers") or []),
    }
    if "replicas" in spec:
        found["replicas"] = spec["replicas"]
    return found


def listed(
    api: ClusterApiClient,
    version: str,
    kind: str,
    namespace: str | None,
    selector: str | None = None,
) -> list[dict[str, Any]]:
    for _ in range(40):  # a kind just established answers 429 for a moment
        try:
            found = list_objects(api, version, kind, namespace, selector)
            # Being deleted (a Foreground deletion waits for its pods): as good as gone, and
            # how long it takes is the cluster's business, not the run's.
            return [o for o in found if not o["metadata"].get("deletionTimestamp")]
        except ResourceNotFound:  # the kind is not served (the host before bootstrap)
            return []
        except ClusterThrottled:
            time.sleep(0.25)
    return list_objects(api, version, kind, namespace, selector)


def end_state(world: World, records: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the federation looks like after a run, names made neutral; of the operation
    records, those named with a ``records`` prefix."""
    host, selector = world.host(), f"{LABEL_FEDERATION}={world.federation}"
    state: dict[str, Any] = {"host": {}, "members": {}, "blocks": {}, "dns": {}}
    for kind in ("FederatedDeployment", "FederatedObject"):
        for o in listed(host, API_VERSION, kind, world.namespace):
            state["host"][f"{kind}/{o['metadata']['name']}"] = _object(o)
    for o in listed(host, API_VERSION, "MemberCluster", world.system):
        spec = o.get("spec") or {}
        state["host"][f"MemberCluster/{o['metadata']['name']}"] = {
            "fenced": bool(spec.get("fenced")),
            "taints": spec.get("taints") or [],
            "namespaces": spec.get("namespaces") or [],
        }
    for o in listed(host, API_VERSION, "FederationOperation", world.system):
        name = o["metadata"]["name"]
        if _elsewhere(name, world) or not any(name.startswith(r) for r in records):
            continue  # an earlier case's migration's record, or another procedure's
        status = o.get("status") or {}
        entries = status.get("steps") or []
        if entries and entries[-1].get("message", "").startswith("abandoned:"):
            continue  # a drill whose run died, closed by the next one: history
        # A run that failed leaves a "Failed" entry (with why) among the steps, its history:
        # the phases themselves must each be there once, in order.
        steps = [s["name"] for s in entries if s["name"] not in MARKS]
        key = f"FederationOperation/{_per_run(name)}"
        key += (
            f"#{sum(k.startswith(key) for k in state['host']) + 1}" if key in state["host"] else ""
        )
        state["host"][key] = {
            "phase": status.get("phase"),
            "steps": steps,
        }
    # Every lease released, or lapsed (a killed run's lease no later run needed is free all
    # the same): which leases exist depends on what ran before in a shared federation.
    now = datetime.now(UTC)
    state["host"]["held leases"] = sorted(
        o["metadata"]["name"]
        for o in listed(host, LEASE_API, "Lease", world.system)
        if (lease := Lease.from_object(o)).holder and not lease.expired(now)
    )
    for member in world.testbed.members:
        api, found = admin(member.name), {}
        with contextlib.suppress(ClusterError):  # a member that is down has no state to read
            for version, kind in MEMBER_KINDS:
                for o in listed(api, version, kind, world.namespace, selector):
                    found[f"{kind}/{o['metadata']['name']}"] = _object(o)
            for m in member_manifests(world.federation):
                meta = m["metadata"]
                with contextlib.suppress(ResourceNotFound):
                    live = get(api, m["apiVersion"], m["kind"], meta["name"], meta.get("namespace"))
                    if not live["metadata"].get("deletionTimestamp"):  # going: as good as gone
                        found[f"{m['kind']}/{meta['name']}"] = "present"
            tokens = k8s.CoreV1Api(api).list_namespaced_secret(
                names(world.federation).namespace,
                field_selector="type=kubernetes.io/service-account-token",
            )
            found["token-secrets"] = len(tokens.items)
        state["members"][member.name] = found
    state["data"] = _data(world)
    state["blocks"] = _blocks(world)
    state["dns"] = answers(world, host)
    return _neutral(state, world)


def _per_run(record: str) -> str:
    """A drill's record is named for its run (``drill-<region>-<run>``): the run left out."""
    return re.sub(r"^(drill-.+)-[0-9a-f]{8}$", r"\1", record)


def _elsewhere(record: str, world: World) -> bool:
    """Whether an operation record is about a workload of another case's namespace (a
    migration's is named for its namespace; a failover's is the federation's own)."""
    return "crash-" in record and world.namespace not in record


def _data(world: World) -> dict[str, Any]:
    """Every member's claims in the namespace (owners, finalizers) and, for those bound, the
    sha256 of every file in them: a migration's copy, and its source kept until cleanup."""
    found: dict[str, Any] = {}
    for member in world.testbed.members:
        api, claims = admin(member.name), {}
        with contextlib.suppress(ClusterError):
            for o in listed(api, "v1", "PersistentVolumeClaim", world.namespace):
                claims[o["metadata"]["name"]] = _object(o)
            for workload in {n.rsplit("-", 1)[0].split("-", 1)[1] for n in claims}:
                for claim, root in claim_directories(api, world.namespace, workload).items():
                    claims[claim]["files"] = digests(root)
        if claims:
            found[member.name] = claims
    return _labelled(found)


def _labelled(data: dict[str, Any]) -> dict[str, Any]:
    """File digests named by first appearance (member, claim, path in order): what a case
    compares is which copies hold the same bytes (a copy its source's, a source unchanged),
    not the bytes themselves, which a seed draws afresh."""
    labels: dict[str, str] = {}
    for member in sorted(data):
        for claim in sorted(data[member]):
            files = data[member][claim].get("files")
            if files is None:
                continue
            for path in sorted(files):
                files[path] = labels.setdefault(files[path], f"content-{len(labels) + 1}")
    return data


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path: computed here, not by fleetflow."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(p for p in root.rglob("*") if p.is_file())
    }


def _blocks(world: World) -> dict[str, Any]:
    try:
        federation = Federation.load(world.federation)
    except ValueError:
        return {"federation": None}
    found: dict[str, Any] = {"federation": sorted(federation.member_clusters)}
    for name in federation.member_clusters:
        try:
            block = KubeCluster.load(name)
        except ValueError:
            found[name] = None
            continue
        token = block.token.get_secret_value() if block.token else ""
        found[name] = {"joined_as": block.joined_as, "token": _works(block) if token else None}
    return found


def _works(block: KubeCluster) -> bool:
    """Whether the block's token is accepted by its cluster (a rotation must leave one that
    is): refused as unauthenticated, or only forbidden."""
    try:
        k8s.CoreV1Api(api_client(block.credentials())).list_namespace(limit=1)
    except ClusterUnauthorized:
        return False
    except ClusterForbidden:
        return True
    return True


def answers(world: World, host: ClusterApiClient) -> dict[str, list[str]]:
    server = f"127.0.0.1:{world.testbed.dns_ports().dns}"
    answers = {}
    for o in listed(host, API_VERSION, "FederatedDeployment", world.namespace):
        hostname = ((o.get("spec") or {}).get("dns") or {}).get("hostname")
        if hostname:
            answers[hostname] = lookup(f"{hostname}.{world.testbed.dns_zone}", server).targets
    return answers


def ready_totals(world: World) -> dict[str, int]:
    """Ready replicas of each workload in the namespace, over the members that answer."""
    return ready_totals_on(world, *(m.name for m in world.testbed.members))


def ready_totals_on(world: World, *members: str) -> dict[str, int]:
    """Ready replicas of each workload in the namespace, over these members (those that answer)."""
    totals: dict[str, int] = {}
    for member in members:
        with contextlib.suppress(ClusterError):
            for version, kind in MEMBER_KINDS[:2]:
                for o in listed(admin(member, 2.0), version, kind, world.namespace):
                    name = o["metadata"]["name"]
                    ready = (o.get("status") or {}).get("readyReplicas", 0)
                    totals[name] = totals.get(name, 0) + ready
    return totals


def floors(world: World) -> dict[str, int]:
    """Each federated workload's replicas: what must stay Ready while nothing is down."""
    return {
        o["metadata"]["name"]: (o.get("spec") or {}).get("replicas", 0)
        for o in listed(world.host(), API_VERSION, "FederatedDeployment", world.namespace)
    }
