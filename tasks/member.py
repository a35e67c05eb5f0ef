"""Steps in a member cluster: membership checks, tokens, and proof that a token is limited."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from prefect import task
from pydantic import SecretStr

from fleetflow.admission import LABEL_ROOM, PodSecurity, room_labels
from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterUnauthorized,
    InvalidResource,
    MembershipError,
    ResourceConflict,
    ResourceNotFound,
)
from fleetflow.kube import ClusterCredentials, api_client, delete, list_objects
from fleetflow.membership import IssuedToken, names, token_secret
from fleetflow.models import Action, Verb
from fleetflow.objects import LABEL_OBJECT
from fleetflow.polling import poll_until
from fleetflow.settings import settings
from fleetflow.tasks.clusters import client, cluster_name
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE


@task(**CLUSTER_TASK)
def federations_of(block: KubeCluster) -> set[str]:
    """Federations this cluster has already joined, from the namespaces joining creates."""
    namespaces = k8s.CoreV1Api(client(block)).list_namespace(label_selector=LABEL_FEDERATION)
    # A namespace being deleted is a membership being removed: it does not count.
    return {
        ns.metadata.labels[LABEL_FEDERATION]
        for ns in namespaces.items
        if ns.metadata.deletion_timestamp is None
    }


def endpoint(block: KubeCluster) -> tuple[str, str | None]:
    """The member's API URL and base64 CA, as the admin credentials reach it."""
    config = block.api_client().configuration
    ca_data = None
    if config.ssl_ca_cert:
        ca_data = base64.b64encode(Path(config.ssl_ca_cert).read_bytes()).decode()
    return str(config.host), ca_data


def _tokens(api: k8s.CoreV1Api, federation: str) -> list[tuple[int, Any]]:
    """The federation's token Secrets in the member, by generation."""
    n = names(federation)
    found = api.list_namespaced_secret(n.namespace, label_selector=LABEL_FEDERATION).items
    prefix = n.token_prefix
    return sorted(
        (int(s.metadata.name.removeprefix(prefix)), s)
        for s in found
        if s.metadata.name.startswith(prefix) and s.metadata.name.removeprefix(prefix).isdigit()
    )


def _exists(api: k8s.CoreV1Api, namespace: str) -> bool:
    try:
        api.read_namespace(namespace)
    except ResourceNotFound:
        return False
    return True


def wait_token(api: k8s.CoreV1Api, namespace: str, name: str) -> SecretStr:
    """The token controller fills a new token Secret within moments; wait for it."""
    secret = poll_until(
        lambda: api.read_namespaced_secret(name, namespace),
        lambda s: bool(s.data and s.data.get("token")),
        timeout=settings().setup_timeout,
        waiting_for=f"token Secret {namespace}/{name} filled",
        describe=lambda s: "no token yet",
        hint="is the member's kube-controller-manager running?",
    )
    return SecretStr(base64.b64decode(secret.data["token"]).decode())


@task(**CLUSTER_TASK)
def issue_token(
    block: KubeCluster, federation: str, *, rotate: bool = False, dry_run: bool = False
) -> IssuedToken:
    """The service account's token: the newest one if any (so a rerun makes no duplicate), or a
    new one; with ``rotate``, always a new generation. A dry run that would create one returns
    no token."""
    api = k8s.CoreV1Api(client(block))
    namespace = names(federation).namespace
    existing = _tokens(api, federation) if _exists(api, namespace) else []
    if existing and not rotate:
        name = existing[-1][1].metadata.name
        return IssuedToken(
            secret=name, namespace=namespace, created=False, token=wait_token(api, namespace, name)
        )
    generation = existing[-1][0] + 1 if existing else 1
    manifest = token_secret(federation, generation)
    name = manifest["metadata"]["name"]
    if dry_run:
        return IssuedToken(secret=name, namespace=namespace, created=True, token=None)
    api.create_namespaced_secret(namespace, manifest)
    return IssuedToken(
        secret=name, namespace=namespace, created=True, token=wait_token(api, namespace, name)
    )


@task(**CLUSTER_TASK)
def revoke_tokens(
    block: KubeCluster, federation: str, member: str, keep: SecretStr | None = None
) -> list[Action]:
    """Delete every token Secret of the federation's account except the one holding ``keep``."""
    api = k8s.CoreV1Api(client(block))
    n = names(federation)
    namespace, revoked = n.namespace, []
    # Every token Secret for the account, however named or labelled: one minted under another
    # name (the account may create Secrets here, to rotate) must not outlive a rotation.
    for secret in api.list_namespaced_secret(namespace).items:
        owner = (secret.metadata.annotations or {}).get("kubernetes.io/service-account.name")
        if secret.type != "kubernetes.io/service-account-token" or owner != n.service_account:
            continue
        token = base64.b64decode((secret.data or {}).get("token", "")).decode()
        if keep is not None and token == keep.get_secret_value():
            continue
        try:
            api.delete_namespaced_secret(secret.metadata.name, namespace)
        except ResourceNotFound:
            continue
        revoked.append(
            Action(
                cluster=member,
                kind="Secret",
                name=secret.metadata.name,
                namespace=namespace,
                verb=Verb.DELETE,
            )
        )
    return revoked


CHECKS: list[tuple[dict[str, str], bool]] = [
    ({"group": "apps", "resource": "deployments", "verb": "list"}, True),
    ({"group": "", "resource": "nodes", "verb": "list"}, True),
    ({"group": "", "resource": "configmaps", "verb": "create"}, True),
    ({"group": "", "resource": "secrets", "verb": "get", "namespace": "kube-system"}, False),
    ({"group": "", "resource": "secrets", "verb": "list"}, False),  # cluster-wide
    ({"group": "", "resource": "serviceaccounts", "subresource": "token", "verb": "create"}, False),
    (
        {"group": "rbac.authorization.k8s.io", "resource": "clusterrolebindings", "verb": "create"},
        False,
    ),
    ({"group": "*", "resource": "*", "verb": "*"}, False),
]
"""What a member token must and must not be allowed to do."""


def checks(namespaces: list[str]) -> list[tuple[dict[str, str], bool]]:
    """``CHECKS``, and Secrets writable in each namespace the member is joined for."""
    joined = [
        ({"group": "", "resource": "secrets", "verb": "create", "namespace": ns}, True)
        for ns in namespaces
    ]
    return [*CHECKS, *joined]


@task(**CLUSTER_TASK)
def verify_limited(
    credentials: ClusterCredentials | None, namespaces: list[str] | None = None
) -> None:
    """Prove the token works and is least-privilege, by asking the member's authorizer. None:
    a dry run that issued no token, so there is nothing to prove yet."""
    if credentials is None:
        return
    auth = k8s.AuthorizationV1Api(api_client(credentials))
    _wait_authenticated(
        auth, True, f"the apiserver of {credentials.name!r} to accept the new token"
    )
    wrong = []
    for attributes, expected in checks(namespaces or []):
        review = auth.create_self_subject_access_review(
            {"spec": {"resourceAttributes": attributes}}
        )
        if review.status.allowed != expected:
            wrong.append(f"{attributes} {'denied' if expected else 'allowed'}")
    if wrong:
        raise MembershipError(
            f"the member token of {credentials.name!r} is not least-privilege as required: "
            f"{'; '.join(wrong)}. Check for extra bindings to its service account or groups"
        )
    _wait_guarded(api_client(credentials))


def _guarded(api: Any) -> bool:
    """Whether the member's admission policy refuses this token what RBAC allows it: a
    ConfigMap in ``kube-system`` (a server-side dry run: nothing is written)."""
    probe = {"metadata": {"name": "fleetflow-admission-probe"}}
    try:
        k8s.CoreV1Api(api).create_namespaced_config_map("kube-system", probe, dry_run="All")
    except (InvalidResource, ClusterForbidden) as exc:
        return "ValidatingAdmissionPolicy" in str(exc)
    return False


def _wait_guarded(api: Any) -> None:
    """The policy join applied is in force a moment after it is written (the apiserver reads
    policies through an informer): no token is handed over before it is."""
    poll_until(
        lambda: _guarded(api),
        lambda guarded: guarded,
        timeout=settings().setup_timeout,
        waiting_for=f"the admission policy of {api.cluster!r} in force for the new token",
        describe=lambda _: "a ConfigMap in kube-system is still accepted",
        hint="a member joined by an older fleetflow has no policy: rejoin it (with admin "
        "rights); ValidatingAdmissionPolicy needs Kubernetes 1.30 or later",
    )


def _token_accepted(auth: k8s.AuthorizationV1Api) -> bool:
    """Whether the apiserver authenticates the client's token (any review answers)."""
    try:
        auth.create_self_subject_access_review(
            {"spec": {"resourceAttributes": {"verb": "list", "resource": "pods"}}}
        )
    except ClusterUnauthorized:
        return False
    return True


def _wait_authenticated(auth: k8s.AuthorizationV1Api, accepted: bool, waiting_for: str) -> None:
    """Wait until the apiserver accepts (or refuses) the token: its authenticator reads token
    Secrets through a cache, so a Secret just created or deleted counts a moment later."""
    poll_until(
        lambda: _token_accepted(auth) == accepted,
        bool,
        timeout=settings().setup_timeout,
        interval=0.5,
        waiting_for=waiting_for,
        describe=lambda _: "not yet",
    )


@task(**PRIVATE, timeout_seconds=60)
def unreachable_error(block: KubeCluster) -> ClusterError | None:
    """None when the cluster answers, else its error. One attempt: callers decide what to do."""
    try:
        k8s.VersionApi(client(block)).get_code()
    except ClusterError as exc:
        return exc
    return None


def unreachable_reason(block: KubeCluster) -> str | None:
    """None when the cluster answers, else why not."""
    error = unreachable_error(block)
    return str(error) if error else None


PROPAGATED_KINDS = (
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress"),
    ("batch/v1", "Job"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "ServiceAccount"),
)
"""What unjoin removes when asked to, in removal order: workloads before what they use.
PersistentVolumeClaims are never in it (their data stays); Secrets are listed per joined
namespace, the only ones the member's token may read."""


@task(**CLUSTER_TASK)
def delete_propagated(
    block: KubeCluster,
    federation: str,
    namespaces: list[str] | None = None,
    kinds: list[tuple[str, str]] | None = None,
) -> list[Action]:
    """Delete what the federation propagated to this member: its workloads and federated
    objects of the built-in kinds and of ``kinds`` (the federation's custom resources), Secrets
    in ``namespaces``. PVCs are kept: data."""
    api, actions = client(block), []
    selector = f"{LABEL_FEDERATION}={federation}"
    listed: list[tuple[str, str, dict[str, Any]]] = []
    for api_version, kind in [*(kinds or []), *PROPAGATED_KINDS]:
        try:
            found = list_objects(api, api_version, kind, None, selector)
        except (ResourceNotFound, ClusterForbidden):  # not served, or not granted: none of ours
            continue
        listed += [(api_version, kind, o) for o in found]
    for namespace in namespaces or []:
        listed += [
            ("v1", "Secret", o)
            for o in list_objects(api, "v1", "Secret", namespace, f"{selector},{LABEL_OBJECT}")
        ]
    own = names(federation).namespace
    for api_version, kind, obj in listed:
        meta = obj["metadata"]
        if meta["namespace"] == own:
            # Join's own account and its token, labelled for the federation too: deleted here
            # they took the member's token with them before the unjoin revoked it (crash point
            # unjoin/cleared:after: the rerun was refused with 401). Revocation removes them.
            continue
        gone = delete(api, api_version, kind, meta["name"], meta["namespace"])
        actions.append(
            Action(
                cluster=cluster_name(block),
                kind=kind,
                name=meta["name"],
                namespace=meta["namespace"],
                verb=Verb.DELETE if gone else Verb.ABSENT,
            )
        )
    return actions


@task(**CLUSTER_TASK)
def ensure_namespaces(
    block: KubeCluster, namespaces: list[str], federation: str, level: PodSecurity, dry_run: bool
) -> list[Action]:
    """Open each namespace as a room of the federation (``fleetflow.admission``): one that does
    not exist yet is created with the room's labels and Pod Security ``level``; one that exists
    is the application's, and gets the room label alone (its Pod Security is its owner's
    business; unjoin never deletes it). Admin rights: the member's account cannot do this."""
    api, actions = k8s.CoreV1Api(client(block)), []
    for namespace in namespaces:
        try:
            found = api.read_namespace(namespace)
        except ResourceNotFound:
            found = None
        labels = (found.metadata.labels or {}) if found else {}
        if found is not None and labels.get(LABEL_ROOM) == federation:
            continue
        if not dry_run:
            if found is None:
                with contextlib.suppress(ResourceConflict):
                    api.create_namespace(
                        {"metadata": {"name": namespace, "labels": room_labels(federation, level)}}
                    )
            else:
                api.patch_namespace(namespace, {"metadata": {"labels": {LABEL_ROOM: federation}}})
        verb = Verb.CREATE if found is None else Verb.UPDATE
        actions.append(
            Action(cluster=cluster_name(block), kind="Namespace", name=namespace, verb=verb)
        )
    return actions


@task(**CLUSTER_TASK)
def wait_namespace_not_terminating(block: KubeCluster, namespace: str) -> None:
    """A rejoin right after an unjoin finds the old namespace still terminating, and nothing can
    be created in it: wait until it is gone."""
    api = k8s.CoreV1Api(client(block))

    def terminating() -> bool:
        try:
            return api.read_namespace(namespace).metadata.deletion_timestamp is not None
        except ResourceNotFound:
            return False

    poll_until(
        terminating,
        lambda still: not still,
        timeout=settings().setup_timeout + 30,
        interval=0.5,
        waiting_for=f"namespace {namespace} in {cluster_name(block)!r} gone (a previous unjoin)",
        describe=lambda still: "still terminating",
        hint="check what blocks its finalizers, then retry",
    )


@task(**CLUSTER_TASK)
def wait_token_refused(credentials: ClusterCredentials) -> None:
    """The apiserver drops a deleted token Secret from its cache within moments."""
    _wait_authenticated(
        k8s.AuthorizationV1Api(api_client(credentials)),
        False,
        f"the old token of {credentials.name!r} refused after its Secret was deleted",
    )
