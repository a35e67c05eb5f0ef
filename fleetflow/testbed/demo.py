"""Federated workloads for the test bed: the ``demo`` federation's samples (so that rebalance,
failover, drills, taints, migration and unjoin show real moves on first use, each against every
kind of workload at once), and the one builder that tests and benchmarks use too. Pure
manifests."""

from __future__ import annotations

from typing import Any

from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION, Manifest

NAMESPACE = "shop"
DEMO_TAINT = "dedicated=batch:NoSchedule"
"""The taint the demo sets on its middle member: batch work (``worker``, ``checkout``) tolerates
it, the rest stays off it."""
BATCH = [{"key": "dedicated", "operator": "Equal", "value": "batch"}]
CPU_AT_HALF = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
    }
]


def restricted(pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` (a pod spec) as Pod Security's ``restricted`` level admits it, the level of the
    namespaces fleetflow opens by default: not root, no privilege escalation, no capability,
    the runtime's seccomp profile. What a template should say anyway."""
    pod["securityContext"] = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    for container in pod.get("containers", []):
        container["securityContext"] = {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    return pod


def federated_deployment(
    federation: str,
    name: str,
    namespace: str,
    replicas: int,
    *,
    placement: dict[str, Any] | None = None,
    hostname: str | None = None,
    overrides: list[dict[str, Any]] | None = None,
    cpu: str = "100m",
    memory: str = "64Mi",
    image: str = "nginx:1.27",
) -> Manifest:
    """A FederatedDeployment of one container requesting ``cpu`` and ``memory`` (kwok runs it),
    exposed in DNS as ``hostname`` when given, with a 5 s TTL; ``federation`` propagates it."""
    labels = {"app": name}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": restricted(
                        {
                            "containers": [
                                {
                                    "name": name,
                                    "image": image,
                                    "resources": {"requests": {"cpu": cpu, "memory": memory}},
                                }
                            ]
                        }
                    ),
                },
            },
        },
        "placement": placement or {},
    }
    if hostname:
        spec["dns"] = {"hostname": hostname, "ttl": 5}
    if overrides:
        spec["overrides"] = overrides
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedDeployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_FEDERATION: federation},
        },
        "spec": spec,
    }


def federated_statefulset(
    federation: str,
    name: str,
    namespace: str,
    member: str,
    *,
    volumes: tuple[str, ...] = ("data",),
    size: str = "1Gi",
    data: dict[str, Any] | None = None,
    cpu: str = "100m",
) -> Manifest:
    """A StatefulSet of one replica on ``member``, a claim template per volume (the test bed's
    default StorageClass makes each a directory on this machine), exposed in DNS as
    ``<name>-<namespace>``; ``data``: its ``spec.data`` (residency, datasets)."""
    fd = federated_deployment(
        federation,
        name,
        namespace,
        1,
        placement={"clusters": [member]},
        hostname=f"{name}-{namespace}",
        cpu=cpu,
    )
    fd["spec"]["kind"] = "StatefulSet"
    spec = fd["spec"]["template"]["spec"]
    spec["serviceName"] = name
    spec["volumeClaimTemplates"] = [
        {
            "metadata": {"name": v},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": size}},
            },
        }
        for v in volumes
    ]
    if data is not None:
        fd["spec"]["data"] = data
    return fd


def federated_object(
    federation: str,
    namespace: str,
    template: Manifest,
    *,
    name: str | None = None,
    placement: dict[str, Any] | None = None,
    overrides: list[dict[str, Any]] | None = None,
    adopt: bool = False,
) -> Manifest:
    """A FederatedObject carrying ``template`` (named after it unless ``name``); without a
    placement it follows the workloads that reference it."""
    spec: dict[str, Any] = {"template": template}
    if placement is not None:
        spec["placement"] = placement
    if overrides:
        spec["overrides"] = overrides
    if adopt:
        spec["adopt"] = True
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedObject",
        "metadata": {
            "name": name or template["metadata"]["name"],
            "namespace": namespace,
            "labels": {LABEL_FEDERATION: federation},
        },
        "spec": spec,
    }


def demo_taints(members: list[str]) -> dict[str, list[str]]:
    """The taints the demo sets: :data:`DEMO_TAINT` on the middle member when there are three or
    more (with fewer, a tainted member would leave the untolerant workloads one place to run)."""
    return {members[len(members) // 2]: [DEMO_TAINT]} if len(members) >= 3 else {}


def demo_workloads(
    members: list[str], federation: str, namespace: str = NAMESPACE, dns_suffix: str = ""
) -> list[Manifest]:
    """Every kind of workload the federation places, over the members:

    - ``web``: a front end weighted towards the first member, exposed in DNS, reading a
      ConfigMap (``web-config``, a FederatedObject) that follows it, with another value on the
      last member;
    - ``api``: spread evenly, exposed;
    - ``worker``: an image override on the last member, tolerating :data:`DEMO_TAINT`;
    - ``ledger``: a StatefulSet with a volume, pinned to the first member, exposed, and its
      headless Service (a FederatedObject that follows it);
    - ``search``: autoscaled by each member's HPA between 2 and 6 replicas;
    - ``checkout``: affinity groups (every member but the last, then any) and a spread
      over at most two clusters, tolerating :data:`DEMO_TAINT`.

    ``dns_suffix`` follows each DNS name, so that two federations can share one zone.
    """
    first, last = members[0], members[-1]
    weights = {first: 2, **{m: 1 for m in members[1:]}}
    override = [{"clusterName": last, "image": "nginx:1.27-alpine"}]
    web = federated_deployment(
        federation,
        "web",
        namespace,
        6,
        placement={"weights": weights},
        hostname=f"web{dns_suffix}",
    )
    pod = web["spec"]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": "web-config"}}]
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config"},
        "data": {"greeting": "hello"},
    }
    # No placement: it goes wherever web runs, before web, and leaves after it.
    web_config = federated_object(federation, namespace, config)
    web_config["spec"]["overrides"] = [
        {"clusterName": last, "mergePatch": {"data": {"greeting": "hej"}}}
    ]
    worker = federated_deployment(
        federation, "worker", namespace, 3, overrides=override, placement={"tolerations": BATCH}
    )
    ledger = federated_statefulset(federation, "ledger", namespace, first)
    ledger["spec"]["dns"]["hostname"] = f"ledger{dns_suffix}"
    # The headless Service a StatefulSet names (serviceName): it follows the ledger wherever
    # it runs, a migration included.
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ledger"},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "ledger"},
            "ports": [{"name": "http", "port": 80}],
        },
    }
    ledger_service = federated_object(federation, namespace, service)
    search = federated_deployment(federation, "search", namespace, 2)
    search["spec"]["autoscaling"] = {"minReplicas": 2, "maxReplicas": 6, "metrics": CPU_AT_HALF}
    checkout = federated_deployment(
        federation,
        "checkout",
        namespace,
        4,
        placement={
            "affinityGroups": [
                {"name": "home", "clusters": members[:-1]},
                {"name": "anywhere", "clusterSelector": {}},
            ],
            "spreadConstraints": [{"spreadBy": "cluster", "minGroups": 1, "maxGroups": 2}],
            "tolerations": BATCH,
        },
    )
    return [
        web_config,
        web,
        federated_deployment(federation, "api", namespace, 4, hostname=f"api{dns_suffix}"),
        worker,
        ledger_service,
        ledger,
        search,
        checkout,
    ]
