"""What joining puts in a member cluster, and the registry entry it adds to the host. Pure.

A member gets a dedicated namespace, a service account and a least-privilege cluster role: only
what fleetflow's flows use (workloads, their pods read-only, nodes read-only, the kinds an
application needs beside its workloads: PVCs, jobs, ConfigMaps, Services, ServiceAccounts,
Ingresses; events), never cluster-admin. Its token is a ``kubernetes.io/service-account-token``
Secret, so a rotation can revoke exactly the old token by deleting its Secret.

Two widenings are deliberately narrower than a cluster-wide rule:

- **Secrets** only in the namespaces the member was joined for: join (with admin rights) puts a
  Role and RoleBinding in each. A token that reads every Secret of a cluster is a token that owns
  it (service account tokens, TLS keys, other teams' passwords), so the member's never does.
- **Custom resources** through an aggregated ClusterRole that starts empty: a member's admin grants
  a kind by labelling a ClusterRole ``fleetflow.io/aggregate-to-member-<federation>: "true"``.
  fleetflow cannot know the kinds in advance, and a wildcard rule would include Secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from fleetflow.admission import ANNOTATION_POD_SECURITY, PodSecurity, guard_manifests
from fleetflow.controlplane import (
    LABEL_FEDERATION,
    LABEL_MANAGED,
    MANAGED_BY,
    Manifest,
    minor,
    token_secret_for,
)
from fleetflow.federated import FederatedDeployment
from fleetflow.kube.client import ClusterCredentials
from fleetflow.models import Action, Verb
from fleetflow.registry import MemberCluster

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
    # Migration: where a claim's data is (its volume), and the class a copy's claim asks for.
    {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": READ},
    {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": READ},
    # FederatedObjects: the kinds a workload needs beside it (never serviceaccounts/token).
    {"apiGroups": [""], "resources": ["configmaps", "services", "serviceaccounts"], "verbs": WRITE},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses"], "verbs": WRITE},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": WRITE},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": READ},
    # Federated autoscaling: each member's HPA for its copy, and its status.
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": WRITE},
]
"""Cluster-wide rules of a member's service account."""

TOKEN_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "create", "delete"]},
]
"""In the federation's own member namespace only, which holds nothing but this service
account's token Secrets: mint a successor token and revoke the old one, so rotation needs no
admin credentials. Secrets anywhere else stay unreadable."""

SECRET_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": WRITE},
]
"""In each namespace the member was joined for (``JoinRequest.namespaces``) only: propagate the
federation's Secrets there. Never a cluster-wide rule."""

AGGREGATE_LABEL_PREFIX = "fleetflow.io/aggregate-to-member-"


class MemberNames(BaseModel):
    """The fixed names of a federation's objects in a member."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    service_account: str
    cluster_role: str
    role: str
    custom_role: str
    """Aggregated ClusterRole: custom resource kinds a member admin lets fleetflow write."""
    secrets_role: str
    """The Role (and RoleBinding) in each joined namespace for Secrets."""
    aggregate_label: str
    """The label (value ``"true"``) that adds a ClusterRole's rules to ``custom_role``."""

    @property
    def token_prefix(self) -> str:
        return f"{self.service_account}-token-"


def names(federation: str) -> MemberNames:
    base = f"fleetflow-{federation}"
    return MemberNames(
        namespace=base,
        service_account=base,
        cluster_role=f"fleetflow:{federation}:member",
        role=f"{base}-tokens",
        custom_role=f"fleetflow:{federation}:member-custom",
        secrets_role=f"{base}-secrets",
        aggregate_label=f"{AGGREGATE_LABEL_PREFIX}{federation}",
    )


def _labels(federation: str) -> dict[str, str]:
    return {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: federation}


_RBAC = "rbac.authorization.k8s.io/v1"


def _subject(federation: str) -> list[dict[str, str]]:
    n = names(federation)
    return [{"kind": "ServiceAccount", "name": n.service_account, "namespace": n.namespace}]


def _cluster_binding(name: str, federation: str) -> Manifest:
    return {
        "apiVersion": _RBAC,
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": _labels(federation)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": _subject(federation),
    }


def member_manifests(
    federation: str, level: PodSecurity = PodSecurity.RESTRICTED
) -> list[Manifest]:
    """Namespace (noting the Pod Security ``level`` of the rooms the account opens), service
    account, the admission policy that confines it (``fleetflow.admission``), cluster role +
    binding, the aggregated custom-resource cluster role + binding, token role + binding, in
    order: the policy is in force before the account has any right."""
    n, labels = names(federation), _labels(federation)
    ns, sa = n.namespace, n.service_account
    subject = _subject(federation)
    rbac = _RBAC
    custom = [
        {
            # No rules of its own: the aggregation controller fills them from the ClusterRoles a
            # member admin labels, and an apply that sent rules would fight it.
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": n.custom_role, "labels": labels},
            "aggregationRule": {
                "clusterRoleSelectors": [{"matchLabels": {n.aggregate_label: "true"}}]
            },
        },
        _cluster_binding(n.custom_role, federation),
    ]
    annotations = {ANNOTATION_POD_SECURITY: level.value}
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": labels, "annotations": annotations},
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": sa, "namespace": ns, "labels": labels},
        },
        *guard_manifests(federation, ns, sa, level),
        {
            "apiVersion": rbac,
            "kind": "ClusterRole",
            "metadata": {"name": n.cluster_role, "labels": labels},
            "rules": MEMBER_RULES,
        },
        {
            "apiVersion": rbac,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": n.cluster_role, "labels": labels},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": n.cluster_role,
            },
            "subjects": subject,
        },
        *custom,
        {
            "apiVersion": rbac,
            "kind": "Role",
            "metadata": {"name": n.role, "namespace": ns, "labels": labels},
            "rules": TOKEN_RULES,
        },
        {
            "apiVersion": rbac,
            "kind": "RoleBinding",
            "metadata": {"name": n.role, "namespace": ns, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": n.role},
            "subjects": subject,
        },
    ]


def secret_manifests(federation: str, namespaces: list[str]) -> list[Manifest]:
    """A Role on Secrets and its RoleBinding to the member's service account, in each of
    ``namespaces`` (the ones the member was joined for), in order."""
    n, labels = names(federation), _labels(federation)
    found: list[Manifest] = []
    for namespace in sorted(set(namespaces)):
        meta = {"name": n.secrets_role, "namespace": namespace, "labels": labels}
        found += [
            {"apiVersion": _RBAC, "kind": "Role", "metadata": meta, "rules": SECRET_RULES},
            {
                "apiVersion": _RBAC,
                "kind": "RoleBinding",
                "metadata": dict(meta),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": n.secrets_role,
                },
                "subjects": _subject(federation),
            },
        ]
    return found


def token_secret(federation: str, generation: int) -> Manifest:
    """A long-lived token for the member's service account; deleting it revokes the token."""
    n = names(federation)
    name = f"{n.service_account}-token-{generation}"
    return token_secret_for(n.service_account, n.namespace, name, _labels(federation))


class IssuedToken(BaseModel):
    """A service account token and the Secret that holds it (deleting it revokes the token)."""

    secret: str
    namespace: str
    token: SecretStr | None = Field(description="None: a dry run that would issue one")
    created: bool

    def action(self, cluster: str) -> Action:
        verb = Verb.CREATE if self.created else Verb.UNCHANGED
        return Action(
            cluster=cluster, kind="Secret", name=self.secret, namespace=self.namespace, verb=verb
        )

    def credentials(
        self, name: str, api_url: str, ca_data: str | None, *, allow_insecure: bool = False
    ) -> ClusterCredentials | None:
        """Credentials that use this token alone, to prove what it may do."""
        if self.token is None:
            return None
        return ClusterCredentials(
            name=name,
            api_url=api_url,
            ca_data=ca_data,
            token=self.token,
            allow_insecure=allow_insecure,
        )


def member_block_name(federation: str, member: str) -> str:
    """The credentials block of a joined member: ``<federation>-<member>``."""
    return f"{federation}-{member}"


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


def join_problem(
    member: str,
    federation: str,
    *,
    host_version: str,
    member_version: str,
    federations: set[str],
    existing: MemberCluster | None,
    api_url: str,
    registry: Sequence[MemberCluster] = (),
) -> str | None:
    """Why ``member`` cannot join ``federation``, or None. Checked before the first write:
    version skew, membership of another federation (from the namespaces joins create in the
    cluster), a registry name taken by another cluster, and a cluster already registered under
    another name (``registry``: the federation's members; one cluster under two names would be
    given two shares of every workload, and share one account)."""
    problem = skew_problem(host_version, member_version)
    if problem is None and federations - {federation}:
        problem = (
            "that cluster is already a member of federation "
            f"{', '.join(sorted(federations - {federation}))}; unjoin it there first"
        )
    if problem is None and existing is not None:
        problem = existing.registered_elsewhere(federation, api_url)
    twin = next((m.name for m in registry if m.spec.api_url == api_url and m.name != member), None)
    if problem is None and twin is not None:
        problem = f"that cluster ({api_url}) is already member {twin!r}; rejoin it under that name"
    return f"cannot join {member!r}: {problem}" if problem else None


def block_problem(
    block: str,
    federation: str,
    member: str,
    *,
    exists: bool,
    joined_as: str | None,
    listed: bool,
    host: bool,
) -> str | None:
    """Why join may not save the member's credentials block as ``block``, or None. Join
    overwrites only a block it made for this very member (``joined_as``), or, from before
    blocks said so, one the Federation block lists as a member's: never the host's, an admin's
    or another federation's, which a member named to match would replace with its token."""
    if not exists or (not host and joined_as == joined_name(federation, member)):
        return None
    if host:
        why = f"it is federation {federation}'s host credentials block"
    elif joined_as is None and listed:
        return None
    else:
        made = f"for {joined_as}" if joined_as else "by hand (an admin's, or another tool's)"
        why = f"it was made {made}"
    return (
        f"cannot join {member!r}: its credentials block would be {block!r}, which exists and "
        f"join never overwrites: {why}; rename that block, or join the member under another "
        "name; nothing was changed"
    )


def joined_name(federation: str, member: str) -> str:
    """What a block join made says it holds: ``<federation>/<member>``."""
    return f"{federation}/{member}"


def unjoin_problem(
    member: str,
    federation: str,
    *,
    registered: bool,
    blocks: list[str],
    block: str,
    unreachable: str | None,
    force: bool,
    refused: bool = False,
    stranded: Sequence[str] = (),
    naming: Sequence[str] = (),
) -> str | None:
    """Why ``member`` cannot be unjoined as asked, or None. A member that cannot be reached is
    removed only with ``force``: its copies and access stay behind in it. Nor is one that is
    the only place a workload can run (``stranded``: pinned there, or no room elsewhere): once
    it is gone the federation places that workload nowhere and its DNS name answers nothing,
    whether its copy there is kept or deleted. Nor while a placement names it (``naming``,
    :func:`placements_naming`): a rebalance refuses a placement that names a cluster it does
    not know, so those workloads would stop being placed at all. A member no longer
    registered, whose block the federation still lists, is what an unjoin that stopped after
    deregistering it left: finishing it needs no reach into the member. ``refused``: the member
    answers and refuses its token as unknown (an unjoin that stopped after revoking it)."""
    if not registered and block not in blocks:
        # Named as --member takes them, not by their credentials blocks.
        members = [b.removeprefix(member_block_name(federation, "")) for b in blocks]
        return (
            f"{member!r} is not a member of federation {federation}; members: "
            f"{', '.join(members) or 'none'}"
        )
    if unreachable and registered and refused and not force:
        return (
            f"member {member!r} refuses the federation's token ({unreachable}): an unjoin that "
            "stopped after revoking its tokens left it so; nothing was changed. Rerun with force "
            "to remove its registration and credentials block, or with admin_block to also "
            "remove its service account, roles and namespace"
        )
    if unreachable and registered and not force:  # unregistered: an unjoin that stopped late
        return (
            f"cannot reach member {member!r} ({unreachable}); nothing was changed. Rerun "
            "with force to remove its registration and credentials anyway"
        )
    if stranded and not force:
        return (
            f"cannot unjoin {member!r}: it is the only member {', '.join(stranded)} can run on "
            "(its placement, or no room elsewhere); nothing was changed. Move it first "
            "(fleetflow migrate, or a placement that names another member), or rerun with "
            "force to leave it unserved"
        )
    if naming and not force:
        return (
            f"cannot unjoin {member!r}: the placement of {', '.join(naming)} names it, and a "
            "rebalance refuses a placement that names a cluster it does not know; nothing was "
            "changed. Take it out of those placements first, or rerun with force"
        )
    return None


def placements_naming(workloads: Sequence[FederatedDeployment], member: str) -> list[str]:
    """Each workload whose placement names ``member`` where a rebalance checks the name
    against the members (``clusters``, ``weights``), with where: ``shop/web (weights)``. An
    affinity group, a min or a max naming a member that left just no longer applies."""
    found = []
    for fd in workloads:
        placement = fd.spec.placement
        fields = [
            field
            for field, names in (
                ("clusters", placement.clusters or ()),
                ("weights", placement.weights),
            )
            if member in names
        ]
        if fields and not fd.deleting:
            found.append(f"{fd.key} ({', '.join(fields)})")
    return found


def left_behind(cluster: str, manifests: list[Manifest]) -> list[Action]:
    """What stays in a member that fleetflow could not (or was not asked to) remove."""
    return [Action.of(cluster, m, Verb.LEFT_BEHIND) for m in manifests]
