"""The ``demo`` federation's sample workloads, so that rebalance, failover and drills show real
moves on first use. Pure manifests."""

from __future__ import annotations

from typing import Any

from fleetflow.controlplane import API_VERSION, Manifest

NAMESPACE = "shop"


def _workload(
    name: str, replicas: int, placement: dict[str, Any], dns: bool, **extra: Any
) -> Manifest:
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
                                "image": "nginx:1.27",
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            }
                        ]
                    },
                },
            },
        },
        "placement": placement,
        **extra,
    }
    if dns:
        spec["dns"] = {"hostname": name, "ttl": 5}
    return {
        "apiVersion": API_VERSION,
        "kind": "FederatedDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


def demo_workloads(members: list[str]) -> list[Manifest]:
    """Three workloads over the members: a web front end weighted towards the first member and
    exposed in DNS, an API spread evenly and exposed, and a worker with an image override on
    the last member."""
    first, last = members[0], members[-1]
    return [
        _workload("web", 6, {"weights": {first: 2, **{m: 1 for m in members[1:]}}}, dns=True),
        _workload("api", 4, {}, dns=True),
        _workload(
            "worker",
            3,
            {},
            dns=False,
            overrides=[{"clusterName": last, "image": "nginx:1.27-alpine"}],
        ),
    ]
