"""Server-side apply with one field manager.

Apply is idempotent by construction: re-applying the same manifest is a no-op on the server
(the resourceVersion does not change), so a rerun after a crash converges and duplicates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleetflow.kube.client import ClusterApiClient
from fleetflow.kube.errors import ResourceNotFound

FIELD_MANAGER = "fleetflow"


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: give metadata.namespace")
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return f"{base}/{name}" if name else base


def resource_type(client: ClusterApiClient, api_version: str, kind: str) -> ResourceType:
    """Look a kind up by discovery, once per client (the answer is cached on the client)."""
    cache: dict[tuple[str, str], ResourceType] = client.__dict__.setdefault("_fleetflow_types", {})
    key = (api_version, kind)
    if key not in cache:
        path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        found = _get(client, path)
        for resource in found.get("resources", []):
            if "/" in resource["name"]:
                continue  # subresources
            cache[(api_version, resource["kind"])] = ResourceType(
                api_version, resource["kind"], resource["name"], resource["namespaced"]
            )
        if key not in cache:
            raise ResourceNotFound(
                client.cluster, f"the server has no kind {kind} in {api_version}"
            )
    return cache[key]


def _get(client: ClusterApiClient, path: str, query: list[tuple[str, str]] | None = None) -> Any:
    return client.call_api(
        path,
        "GET",
        query_params=query or [],
        response_types_map={200: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def apply(client: ClusterApiClient, manifest: dict[str, Any], *, force: bool = True) -> Any:
    """Server-side apply ``manifest`` as the ``fleetflow`` field manager; return the live object.

    ``force`` takes over fields last set by other managers (kubectl edits, say), which is what a
    federation that owns its members' copies wants.
    """
    meta = manifest["metadata"]
    rtype = resource_type(client, manifest["apiVersion"], manifest["kind"])
    query = [("fieldManager", FIELD_MANAGER)]
    if force:
        query.append(("force", "true"))
    return client.call_api(
        rtype.path(meta["name"], meta.get("namespace")),
        "PATCH",
        query_params=query,
        body=manifest,
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        response_types_map={200: "object", 201: "object"},
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


def get(
    client: ClusterApiClient, api_version: str, kind: str, name: str, namespace: str | None = None
) -> Any:
    """Read one object as a plain dict; raises ResourceNotFound when absent."""
    return _get(client, resource_type(client, api_version, kind).path(name, namespace))


def delete(
    client: ClusterApiClient, api_version: str, kind: str, name: str, namespace: str | None = None
) -> bool:
    """Delete one object; False when it was already gone (so reruns converge)."""
    rtype = resource_type(client, api_version, kind)
    try:
        client.call_api(
            rtype.path(name, namespace),
            "DELETE",
            body={"propagationPolicy": "Foreground"},
            header_params={"Content-Type": "application/json"},
            response_types_map={200: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ResourceNotFound:
        return False
    return True
