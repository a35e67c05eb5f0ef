"""Manifests the integration tests apply directly to clusters."""

from __future__ import annotations

from typing import Any

from fleetflow.testbed.demo import restricted


def deployment(
    namespace: str,
    name: str,
    replicas: int,
    *,
    image: str = "nginx:1.27",
    cpu: str = "100m",
    memory: str = "64Mi",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A plain Deployment whose pods request ``cpu`` and ``memory`` (kwok runs them)."""
    selector = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": restricted(
                    {
                        "containers": [
                            {
                                "name": "app",
                                "image": image,
                                "resources": {"requests": {"cpu": cpu, "memory": memory}},
                            }
                        ]
                    }
                ),
            },
        },
    }


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}


def service(name: str, app: str, *, headless: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"selector": {"app": app}, "ports": [{"port": 80}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def ingress(name: str, service_name: str) -> dict[str, Any]:
    backend = {"service": {"name": service_name, "port": {"number": 80}}}
    rule = {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {"rules": [rule]},
    }
