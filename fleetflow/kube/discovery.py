"""Which kinds a cluster serves, from its discovery documents (readable by any authenticated
user through ``system:discovery``: the member's token needs no extra rule)."""

from __future__ import annotations

from collections.abc import Iterable

from fleetflow.errors import InvalidRequest, ResourceNotFound
from fleetflow.kube.apply import ResourceType, _get, api_path
from fleetflow.kube.client import ClusterApiClient

Kinds = dict[tuple[str, str], bool]
"""(apiVersion, kind) -> namespaced."""


def served_kinds(client: ClusterApiClient, api_versions: Iterable[str]) -> Kinds:
    """The kinds of these group-versions the cluster serves. A group-version it does not serve
    (a custom resource without its CRD) adds nothing: its kinds are missing, not an error. One
    request per group-version, and what it finds is cached on the client for later applies."""
    cache: dict[tuple[str, str], ResourceType] = client.__dict__.setdefault("_fleetflow_types", {})
    found: Kinds = {}
    for api_version in sorted(set(api_versions)):
        try:
            document = _get(client, api_path(api_version))
        except (ResourceNotFound, InvalidRequest):  # not served, or no apiVersion at all
            continue
        for resource in document.get("resources", []):
            if "/" in resource["name"]:
                continue  # subresources
            kind, namespaced = resource["kind"], bool(resource["namespaced"])
            found[(api_version, kind)] = namespaced
            cache[(api_version, kind)] = ResourceType(
                api_version, kind, resource["name"], namespaced
            )
    return found
