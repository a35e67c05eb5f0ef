"""What joining puts in a member cluster, and the registry entry it adds to the host. Pure.

A member gets a dedicated namespace, a service account and a least-privilege cluster role: only
what fleetflow's flows use (workloads, their pods read-only, nodes read-only, PVCs, jobs,
events), never cluster-admin. Its token is a ``kubernetes.io/service-account-token`` Secret, so a
rotation can revoke exactly the old token by deleting its Secret.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fleetflow.controlplane import (
    API_VERSION,
    LABEL_FEDERATION,
    LABEL_MANAGED,
    MANAGED_BY,
    REGION_LABEL,
    ZONE_LABEL,
    Manifest,
)
from fleetflow.health import HealthState

MAX_MINOR_SKEW = 3
"""Members may be up to three minors away from the host, as the kubectl/apiserver skew policy."""

READ = ["get", "list", "watch"]
WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]

MEMBER_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "deployments/scale", "statefulsets", "statefulsets/scale"],
        "verbs": WRITE,
    },
    {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": READ},
    {"apiGroups": [""], "resources": ["pods"], "verbs": READ},
    {"apiGroups": [""], "resources": ["nodes"], "verbs": READ},
    {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": WRITE},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": READ},
]
"""Cluster-wide rules of a member's service account."""

TOKEN_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]},
]
"""In the federation's own member namespace only, which holds nothing but this service
account's token Secrets: mint a successor token and revoke the old one, so rotation needs no
admin credentials. Secrets anywhere else stay unreadable."""


def names(federation: str) -> dict[str, str]:
    """The fixed names of a federation's objects in a member."""
    base = f"fleetflow-{federation}"
    return {
        "namespace": base,
        "service_account": base,
        "cluster_role": f"fleetflow:{federation}:member",
        "role": f"{base}-tokens",
    }


def _labels(federation: str) -> dict[str, str]:
    return {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation}


def member_manifests(federation: str) -> list[Manifest]:
    """Namespace, service account, cluster role + binding, token role + binding, in order."""
    n, labels = names(federation), _labels(federation)
    ns, sa = n["namespace"], n["service_account"]
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": ns, "labels": labels},
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": n["cluster_role"], "labels": labels},
            "rules": MEMBER_RULES,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": n["cluster_role"], "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": n["cluster_role"],
            },
            "subjects": subject,
        },
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": n["role"], "namespace": ns, "labels": labels},
            "rules": TOKEN_RULES,
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": n["role"], "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n["role"]},
            "subjects": subject,
        },
    ]


def token_secret(federation: str, generation: int) -> Manifest:
    """A long-lived token for the member's service account; deleting it revokes the token."""
    n = names(federation)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {
            "name": f"{n['service_account']}-token-{generation}",
            "namespace": n["namespace"],
            "labels": _labels(federation),
            "annotations": {"kubernetes.io/service-account.name": n["service_account"]},
        },
    }


def member_block_name(federation: str, member: str) -> str:
    """The credentials block of a joined member: ``<federation>-<member>``."""
    return f"{federation}-{member}"


def member_cluster(
    federation: str,
    namespace: str,
    member: str,
    *,
    api_url: str,
    credentials_block: str,
    region: str | None,
    zone: str | None,
    labels: dict[str, str],
    ingress_address: str | None,
) -> Manifest:
    """The host's registry entry for a member: where it is and which block reaches it."""
    spec: dict[str, Any] = {
        "federation": federation,
        "credentialsBlock": credentials_block,
        "apiURL": api_url,
        "labels": labels,
        "serviceAccount": names(federation)["service_account"],
    }
    for key, value in (("region", region), ("zone", zone), ("ingressAddress", ingress_address)):
        if value:
            spec[key] = value
    meta_labels = {**labels, **_labels(federation)}
    if region:
        meta_labels[REGION_LABEL] = region
    if zone:
        meta_labels[ZONE_LABEL] = zone
    return {
        "apiVersion": API_VERSION,
        "kind": "MemberCluster",
        "metadata": {"name": member, "namespace": namespace, "labels": meta_labels},
        "spec": spec,
    }


def minor(version: str) -> tuple[int, int]:
    """``v1.36.3`` or ``v1.36.3-gke.1`` -> (1, 36)."""
    major, minor_, *_ = version.removeprefix("v").split(".")
    return int(major), int("".join(ch for ch in minor_ if ch.isdigit()))


def skew_problem(host_version: str, member_version: str) -> str | None:
    """Why a member cannot join a host of this version, or None when it can."""
    host, member = minor(host_version), minor(member_version)
    if host[0] != member[0]:
        return f"member runs {member_version}, host {host_version}: different major versions"
    if abs(host[1] - member[1]) > MAX_MINOR_SKEW:
        return (
            f"member runs {member_version}, host {host_version}: more than {MAX_MINOR_SKEW} "
            "minor versions apart; upgrade the older one first"
        )
    return None


def member_status(entry: Manifest, health: HealthState | None = None, **fields: Any) -> Manifest:
    """A status patch for a registry entry: its whole current status with ``fields`` (and, when
    given, the health and its Ready condition) changed.

    Whole, because server-side apply removes the status fields this field manager omits; the
    Ready condition's lastTransitionTime moves only when Ready flips, so a patch for an
    unchanged member equals its current status and need not be sent.
    """
    status = {**(entry.get("status") or {}), **fields}
    if health is not None:
        ready = "True" if health.placeable else "False"
        old = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        since = (
            old["lastTransitionTime"]
            if old and old["status"] == ready
            else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
        status.update(
            health=health.health.value,
            consecutiveFailures=health.consecutive_failures,
            consecutiveSuccesses=health.consecutive_successes,
            conditions=[
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": health.health.value,
                    "message": "",
                    "lastTransitionTime": since,
                }
            ],
        )
    meta = entry["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": "MemberCluster",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "status": status,
    }
