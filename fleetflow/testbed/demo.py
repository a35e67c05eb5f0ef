"""Federated workloads for the test bed: the ``demo`` federation's samples (so that rebalance,
failover and drills show real moves on first use), and the one builder that tests and benchmarks
use too. Pure manifests."""

from __future__ import annotations

from typing import Any

from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION, Manifest

NAMESPACE = "shop"


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
                    "spec": {
                        "containers": [
                            {
                                "name": name,
                                "image": image,
                                "resources": {"requests": {"cpu": cpu, "memory": memory}},
                            }
                        ]
                    },
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


def demo_workloads(members: list[str], federation: str) -> list[Manifest]:
    """Three workloads over the members, and what the web front end needs: a web front end
    weighted towards the first member, exposed in DNS, reading a ConfigMap that follows it
    (with another value on the last member); an API spread evenly and exposed; and a worker
    with an image override on the last member."""
    first, last = members[0], members[-1]
    weights = {first: 2, **{m: 1 for m in members[1:]}}
    override = [{"clusterName": last, "image": "nginx:1.27-alpine"}]
    web = federated_deployment(
        federation, "web", NAMESPACE, 6, placement={"weights": weights}, hostname="web"
    )
    pod = web["spec"]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": "web-config"}}]
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config"},
        "data": {"greeting": "hello"},
    }
    web_config = {
        "apiVersion": API_VERSION,
        "kind": "FederatedObject",
        "metadata": {
            "name": "web-config",
            "namespace": NAMESPACE,
            "labels": {LABEL_FEDERATION: federation},
        },
        # No placement: it goes wherever web runs, before web, and leaves after it.
        "spec": {
            "template": config,
            "overrides": [{"clusterName": last, "mergePatch": {"data": {"greeting": "hej"}}}],
        },
    }
    return [
        web_config,
        web,
        federated_deployment(federation, "api", NAMESPACE, 4, hostname="api"),
        federated_deployment(federation, "worker", NAMESPACE, 3, overrides=override),
    ]
