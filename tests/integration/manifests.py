"""Manifests the integration tests apply directly to clusters."""

from __future__ import annotations

from typing import Any


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
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "resources": {"requests": {"cpu": cpu, "memory": memory}},
                        }
                    ]
                },
            },
        },
    }
