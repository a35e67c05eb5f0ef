"""Server-side apply with one field manager.

Apply is idempotent by construction: re-applying the same manifest is a no-op on the server
(the resourceVersion does not change), so a rerun after a crash converges and duplicates nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from fleetflow.errors import InvalidRequest, ResourceNotFound
from fleetflow.kube.client import ClusterApiClient

FIELD_MANAGER = "fleetflow"


def segment(value: str) -> str:
    """``value`` as one segment of a request path, quoted: a name given by a user or read from
    an object never adds a segment, a query or a fragment, nor climbs out with ``..``."""
    if value in ("", ".", "..") or "/" in value:
        raise InvalidRequest(f"{value!r} cannot name a Kubernetes object or namespace")
    return quote(value, safe="")


_API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")


def api_path(api_version: str) -> str:
    """Where a group-version's discovery document and kinds are: ``/api/v1`` or
    ``/apis/<group>/<version>``; an apiVersion that is neither is refused, not pasted in."""
    if not _API_VERSION.match(api_version):
        raise InvalidRequest(f"{api_version!r} is not an apiVersion (v1, or GROUP/VERSION)")
    return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the API."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool

    def path(self, name: str | None = None, namespace: str | None = None) -> str:
        base = api_path(self.api_version)
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: give metadata.namespace")
            base += f"/namespaces/{segment(namespace)}"
        base += f"/{segment(self.plural)}"
        return f"{base}/{segment(name)}" if name else base

    def path_all(self) -> str:
        """The collection across all namespaces (or of a cluster-scoped kind)."""
        return f"{api_path(self.api_version)}/{segment(self.plural)}"


def resource_type(client: ClusterApiClient, api_version: str, kind: str) -> ResourceType:
    """Look a kind up by discovery, once per client (the answer is cached on the client)."""
    cache: dict[tuple[str, str], ResourceType] = client.__dict__.setdefault("_fleetflow_types", {})
    key = (api_version, kind)
    if key not in cache:
        found = _get(client, api_path(api_version))
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


def apply(
    client: ClusterApiClient,
    manifest: dict[str, Any],
    *,
    force: bool = True,
    dry_run: bool = False,
    subresource: str | None = None,
    manager: str = FIELD_MANAGER,
) -> Any:
    """Server-side apply ``manifest`` as the ``fleetflow`` field manager (or ``manager``);
    return the live object.

    ``force`` takes over fields last set by other managers (kubectl edits, say), which is what a
    federation that owns its members' copies wants. ``dry_run`` asks the server what the object
    would become, without persisting anything.
    """
    meta = manifest["metadata"]
    rtype = resource_type(client, manifest["apiVersion"], manifest["kind"])
    query = [("fieldManager", manager)]
    if force:
        query.append(("force", "true"))
    if dry_run:
        query.append(("dryRun", "All"))
    return client.call_api(
        rtype.path(meta["name"], meta.get("namespace"))
        + (f"/{subresource}" if subresource else ""),
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


ApplyVerb = Literal["create", "update", "unchanged"]
_VOLATILE = ("managedFields", "resourceVersion", "generation", "creationTimestamp", "uid")


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in _VOLATILE}
    return {**{k: v for k, v in obj.items() if k not in ("metadata", "status")}, "metadata": meta}


def ensure(
    client: ClusterApiClient, manifest: dict[str, Any], *, dry_run: bool = False
) -> ApplyVerb:
    """Apply ``manifest`` and say whether it created, changed, or left the object as it was.

    With ``dry_run`` the answer comes from a server-side dry run, so it is exactly what a real
    run would do, and nothing is written.
    """
    meta = manifest["metadata"]
    try:
        live = get(
            client, manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace")
        )
    except ResourceNotFound:
        if not dry_run:
            apply(client, manifest)
        return "create"
    # Asked first, by a dry run: an apply that changes nothing may still bump the object's
    # resourceVersion (an admission policy's field ownership settles once after its status is
    # first written), and a rerun must leave what is already as wanted untouched.
    after = apply(client, manifest, dry_run=True)
    if _comparable(after) == _comparable(live):
        return "unchanged"
    if not dry_run:
        apply(client, manifest)
    return "update"


def get(
    client: ClusterApiClient, api_version: str, kind: str, name: str, namespace: str | None = None
) -> Any:
    """Read one object as a plain dict; raises ResourceNotFound when absent."""
    return _get(client, resource_type(client, api_version, kind).path(name, namespace))


def list_objects(
    client: ClusterApiClient,
    api_version: str,
    kind: str,
    namespace: str | None = None,
    label_selector: str | None = None,
) -> list[dict[str, Any]]:
    """List objects of a kind as plain dicts (all namespaces when ``namespace`` is None)."""
    rtype = resource_type(client, api_version, kind)
    path = rtype.path(namespace=namespace) if namespace else rtype.path_all()
    query = [("labelSelector", label_selector)] if label_selector else []
    items: list[dict[str, Any]] = _get(client, path, query)["items"]
    return items


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
