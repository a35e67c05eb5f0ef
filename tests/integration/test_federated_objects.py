"""Federated objects on the test bed: dependencies that follow their workload, in order, and
move with it; StatefulSets whose claims outlive scale-downs; custom resources where their CRD
is; conflicts, drift, deletion, zero-write no-ops, the member token's limits, bad input.

One federation serves the module (bootstrapping and joining three members is most of a test's
time otherwise); every test works in namespaces of its own, joined for Secrets from the start.
"""

from __future__ import annotations

import base64
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client as k8s

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION
from fleetflow.errors import ClusterError, ClusterForbidden, InvalidRequest, ResourceNotFound
from fleetflow.federated import ANNOTATION_ORPHAN, FINALIZER
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import apply, delete, get, list_objects
from fleetflow.kube.client import REQUESTS
from fleetflow.membership import names
from fleetflow.models import RebalanceRequest, Report
from fleetflow.objects import LABEL_OBJECT
from fleetflow.polling import poll_until
from fleetflow.testbed.demo import federated_deployment, federated_object
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import a_federation, client_for, delete_namespace, is_host
from tests.integration.manifests import (
    config_map,
    ingress,
    secret,
    service,
)

pytestmark = pytest.mark.integration

NAMESPACES = 7
"""One per test, each joined for Secrets, and one more that no member is joined for."""


@dataclass
class Fed:
    name: str
    namespaces: list[str]
    outside: str
    """A namespace of every cluster that no member was joined for."""


@pytest.fixture(scope="module")
def fed(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[Fed]:
    spaces = [f"o{uuid.uuid4().hex[:8]}-{i}" for i in range(NAMESPACES + 1)]
    for cluster in testbed.cluster_names():
        for ns in spaces:
            k8s.CoreV1Api(client_for(cluster)).create_namespace({"metadata": {"name": ns}})
    try:
        with a_federation(testbed, join=True, prefix="o", namespaces=spaces[:-1]) as name:
            yield Fed(name=name, namespaces=spaces[:-1], outside=spaces[-1])
    finally:
        for ns in spaces:
            delete_namespace(testbed, ns)


def rebalance(fed: Fed, namespace: str, **options: Any) -> Report:
    report: Report = rebalance_replicas(
        RebalanceRequest(federation=fed.name, namespace=namespace, **options)
    )
    return report


def find(cluster: str, api_version: str, kind: str, name: str, ns: str) -> Any:
    try:
        return get(client_for(cluster), api_version, kind, name, ns)
    except ResourceNotFound:
        return None


def holders(testbed: TestbedSpec, api_version: str, kind: str, name: str, ns: str) -> list[str]:
    """The members that have this object."""
    return [
        m.name
        for m in testbed.members
        if find(m.name, api_version, kind, name, ns) is not None
        and not find(m.name, api_version, kind, name, ns)["metadata"].get("deletionTimestamp")
    ]


def states(host: Any, name: str, ns: str) -> dict[str, tuple[str, str]]:
    """The FederatedObject's status: member -> (state, message)."""
    status = get(host, API_VERSION, "FederatedObject", name, ns).get("status") or {}
    return {c["name"]: (c["state"], c.get("message", "")) for c in status.get("clusters", [])}


def member_writes() -> dict[tuple[str, str], int]:
    return {k: n for k, n in REQUESTS.items() if k[1] != "GET" and not is_host(k[0])}


def web(federation: str, ns: str, replicas: int, clusters: list[str]) -> dict[str, Any]:
    """A workload whose pods read a ConfigMap (a volume) and a Secret (env)."""
    fd = federated_deployment(federation, "web", ns, replicas, placement={"clusters": clusters})
    pod = fd["spec"]["template"]["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "config", "configMap": {"name": "web-config"}}]
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": "web-secret"}}]
    return fd


# --- dependencies follow the workload ---------------------------------------------------------


def test_dependencies_go_where_the_workload_goes_in_order_and_move_with_it(
    fed: Fed, testbed: TestbedSpec
) -> None:
    ns = fed.namespaces[0]
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    apply(host, web(fed.name, ns, 2, [a, b]))
    apply(host, federated_object(fed.name, ns, config_map("web-config", {"mode": "prod"})))
    apply(host, federated_object(fed.name, ns, secret("web-secret", {"password": "s3cret"})))
    on_a_b = {"clusters": [a, b]}
    apply(
        host,
        federated_object(fed.name, ns, service("web", "web"), name="web-service", placement=on_a_b),
    )
    apply(
        host,
        federated_object(fed.name, ns, ingress("web", "web"), name="web-ingress", placement=on_a_b),
    )
    REQUESTS.clear()
    dry = rebalance(fed, ns, dry_run=True)  # lists every write, makes none
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET"} == {}
    assert [x.kind for x in dry.writes() if x.cluster == a] == [
        "Secret",
        "ConfigMap",
        "Service",
        "Deployment",
        "Ingress",
    ]
    assert holders(testbed, "v1", "ConfigMap", "web-config", ns) == []
    report = rebalance(fed, ns)

    kinds = [
        ("v1", "ConfigMap", "web-config"),
        ("v1", "Secret", "web-secret"),
        ("v1", "Service", "web"),
        ("networking.k8s.io/v1", "Ingress", "web"),
        ("apps/v1", "Deployment", "web"),
    ]
    for api_version, kind, name in kinds:
        assert holders(testbed, api_version, kind, name, ns) == [a, b], kind
    # Written in dependency order: what the pods need, the workload, then what routes to it.
    order = [x.kind for x in report.actions if x.cluster == a and x.namespace == ns]
    assert order == ["Secret", "ConfigMap", "Service", "Deployment", "Ingress"]
    created = {
        kind: int(find(a, v, kind, name, ns)["metadata"]["resourceVersion"])
        for v, kind, name in kinds
        if kind != "Deployment"  # its status keeps changing its resourceVersion
    }
    assert created["Secret"] < created["ConfigMap"] < created["Service"] < created["Ingress"]
    stored = find(a, "v1", "Secret", "web-secret", ns)
    assert base64.b64decode(stored["data"]["password"]).decode() == "s3cret"
    assert states(host, "web-config", ns) == {a: ("Applied", ""), b: ("Applied", "")}
    fo = get(host, API_VERSION, "FederatedObject", "web-config", ns)
    assert FINALIZER in fo["metadata"]["finalizers"]
    assert fo["status"]["conditions"][0]["message"] == f"follows {ns}/web"

    # Nothing changed: no write anywhere, host included.
    REQUESTS.clear()
    again = rebalance(fed, ns)
    assert again.writes() == []
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET"} == {}

    # The workload moves from a, b to b, c: its ConfigMap and Secret move with it; the
    # Service and Ingress have a placement of their own and stay.
    apply(host, web(fed.name, ns, 2, [b, c]))
    moved = rebalance(fed, ns)
    for kind, name in (("ConfigMap", "web-config"), ("Secret", "web-secret")):
        assert holders(testbed, "v1", kind, name, ns) == [b, c], kind
    assert holders(testbed, "v1", "Service", "web", ns) == [a, b]
    removed = [x.kind for x in moved.actions if x.cluster == a and x.verb.value == "delete"]
    assert removed == ["Deployment", "ConfigMap", "Secret"]  # the workload first
    assert states(host, "web-secret", ns) == {b: ("Applied", ""), c: ("Applied", "")}


def test_a_statefulset_spreads_and_scales_down_without_deleting_claims(
    fed: Fed, testbed: TestbedSpec
) -> None:
    ns = fed.namespaces[1]
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    fd = federated_deployment(fed.name, "db", ns, 6, placement={"clusters": [a, b]})
    fd["spec"]["kind"] = "StatefulSet"
    spec = fd["spec"]["template"]["spec"]
    spec["serviceName"] = "db"
    spec["podManagementPolicy"] = "Parallel"  # kwok never binds the claims: no pod gets Ready
    spec["volumeClaimTemplates"] = [
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    ]
    apply(host, fd)
    apply(
        host, federated_object(fed.name, ns, service("db", "db", headless=True))
    )  # follows serviceName
    rebalance(fed, ns, wait_timeout=1)
    for member in (a, b):
        sts = find(member, "apps/v1", "StatefulSet", "db", ns)
        assert sts["spec"]["replicas"] == 3
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenScaled": "Retain",
            "whenDeleted": "Retain",
        }
    assert find(c, "apps/v1", "StatefulSet", "db", ns) is None
    assert holders(testbed, "v1", "Service", "db", ns) == [a, b]

    def claims(member: str) -> list[str]:
        found = list_objects(client_for(member), "v1", "PersistentVolumeClaim", ns)
        return sorted(p["metadata"]["name"] for p in found)

    expected = [f"data-db-{i}" for i in range(3)]
    for member in (a, b):
        poll_until(
            lambda m=member: claims(m), lambda x: x == expected, timeout=20, waiting_for="claims"
        )

    fd["spec"]["replicas"] = 2
    apply(host, fd)
    rebalance(fed, ns, wait_timeout=1)
    for member in (a, b):
        assert find(member, "apps/v1", "StatefulSet", "db", ns)["spec"]["replicas"] == 1
        assert claims(member) == expected  # a scale-down never deletes a claim
    status = get(host, API_VERSION, "FederatedDeployment", "db", ns)["status"]
    assert {s["name"]: s["desired"] for s in status["clusters"]} == {a: 1, b: 1}

    delete(host, API_VERSION, "FederatedDeployment", "db", ns)
    rebalance(fed, ns, wait_timeout=1)
    poll_until(
        lambda: [m for m in (a, b) if find(m, "apps/v1", "StatefulSet", "db", ns)],
        lambda left: not left,
        timeout=30,
        waiting_for="StatefulSets gone",
    )
    for member in (a, b):
        assert claims(member) == expected  # nor does removing the StatefulSet


# --- custom resources ------------------------------------------------------------------------


def _crd(group: str) -> dict[str, Any]:
    schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _grant(group: str, federation: str) -> dict[str, Any]:
    """What a member admin does to let fleetflow write Widgets: one labelled ClusterRole."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": f"widgets-{group}",
            "labels": {names(federation).aggregate_label: "true"},
        },
        "rules": [
            {
                "apiGroups": [group],
                "resources": ["widgets"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            }
        ],
    }


def member_block(fed: Fed, member: str) -> KubeCluster:
    """The member's own credentials block, as join saved it."""
    block = KubeCluster.load(f"{fed.name}-{member}")
    assert isinstance(block, KubeCluster)
    return block


def find_crd(member: str, name: str) -> bool:
    crd = get(client_for(member), "apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def _allowed(block: KubeCluster, attributes: dict[str, str]) -> bool:
    review = k8s.AuthorizationV1Api(block.api_client()).create_self_subject_access_review(
        {"spec": {"resourceAttributes": attributes}}
    )
    return bool(review.status.allowed)


def test_a_custom_resource_goes_where_its_crd_is_and_is_reported_where_not(
    fed: Fed, testbed: TestbedSpec
) -> None:
    ns = fed.namespaces[2]
    a, b, c = (m.name for m in testbed.members)
    group = f"{ns}.example.com"
    try:
        for member in (a, b):
            apply(client_for(member), _crd(group))
            apply(client_for(member), _grant(group, fed.name))
        for member in (a, b):
            poll_until(
                lambda m=member: find_crd(m, f"widgets.{group}"),
                bool,
                timeout=30,
                waiting_for="the Widget CRD Established",
            )
            block = member_block(fed, member)
            poll_until(
                lambda blk=block: _allowed(
                    blk, {"group": group, "resource": "widgets", "verb": "create", "namespace": ns}
                ),
                bool,
                timeout=30,
                waiting_for="the aggregated role to grant widgets",
            )
        widget = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "gear"},
            "spec": {"teeth": 12},
        }
        host = client_for(testbed.host)
        apply(host, federated_object(fed.name, ns, widget, placement={"clusters": [a, b, c]}))
        rebalance(fed, ns)
        for member in (a, b):
            assert find(member, f"{group}/v1", "Widget", "gear", ns)["spec"] == {"teeth": 12}
        found = states(host, "gear", ns)
        assert found[a] == found[b] == ("Applied", "")
        assert found[c][0] == "MissingKind"
        assert f"{c} does not serve {group}/v1 Widget" in found[c][1]
    finally:
        for member in (a, b):
            with contextlib.suppress(ClusterError):
                delete(
                    client_for(member),
                    "apiextensions.k8s.io/v1",
                    "CustomResourceDefinition",
                    f"widgets.{group}",
                )
                delete(
                    client_for(member),
                    "rbac.authorization.k8s.io/v1",
                    "ClusterRole",
                    f"widgets-{group}",
                )


# --- ownership, drift, deletion ----------------------------------------------------------------


def test_an_unmanaged_object_is_left_alone_and_a_hand_edit_is_put_back(
    fed: Fed, testbed: TestbedSpec
) -> None:
    ns = fed.namespaces[3]
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    theirs = {
        **config_map("settings", {"owner": "someone else"}),
        "metadata": {"name": "settings", "namespace": ns},
    }
    apply(client_for(c), theirs, manager="someone")
    everywhere = {"clusters": [a, b, c]}
    apply(
        host,
        federated_object(
            fed.name, ns, config_map("settings", {"owner": "fleetflow"}), placement=everywhere
        ),
    )
    rebalance(fed, ns)
    assert find(c, "v1", "ConfigMap", "settings", ns)["data"] == {"owner": "someone else"}
    found = states(host, "settings", ns)
    assert found[c][0] == "Conflict" and "fleetflow does not manage it" in found[c][1]
    assert found[a] == found[b] == ("Applied", "")

    edited = find(a, "v1", "ConfigMap", "settings", ns)
    edited["data"]["owner"] = "a hand edit"
    k8s.CoreV1Api(client_for(a)).replace_namespaced_config_map("settings", ns, edited)
    report = rebalance(fed, ns)
    assert find(a, "v1", "ConfigMap", "settings", ns)["data"] == {"owner": "fleetflow"}
    assert states(host, "settings", ns)[a] == ("Drifted", "")
    assert [(x.cluster, x.kind) for x in report.writes()] == [(a, "ConfigMap")]
    assert find(c, "v1", "ConfigMap", "settings", ns)["data"] == {"owner": "someone else"}


def test_deleting_a_federated_object_cleans_every_member_unless_orphaned(
    fed: Fed, testbed: TestbedSpec
) -> None:
    ns = fed.namespaces[4]
    members = [m.name for m in testbed.members]
    host = client_for(testbed.host)
    everywhere = {"clusters": members}
    apply(
        host, federated_object(fed.name, ns, config_map("gone", {"k": "v"}), placement=everywhere)
    )
    kept = federated_object(fed.name, ns, config_map("kept", {"k": "v"}), placement=everywhere)
    kept["metadata"]["annotations"] = {ANNOTATION_ORPHAN: "true"}
    apply(host, kept)
    rebalance(fed, ns)
    assert holders(testbed, "v1", "ConfigMap", "gone", ns) == members
    for name in ("gone", "kept"):
        delete(host, API_VERSION, "FederatedObject", name, ns)
    assert get(host, API_VERSION, "FederatedObject", "gone", ns)  # held by the finalizer
    rebalance(fed, ns)
    poll_until(
        lambda: holders(testbed, "v1", "ConfigMap", "gone", ns),
        lambda h: not h,
        timeout=20,
        waiting_for="gone",
    )
    for name in ("gone", "kept"):
        poll_until(
            lambda n=name: find(testbed.host, API_VERSION, "FederatedObject", n, ns),
            lambda obj: obj is None,
            timeout=10,
            waiting_for=f"{name} released",
        )
    kept_on = holders(testbed, "v1", "ConfigMap", "kept", ns)
    assert kept_on == members
    assert rebalance(fed, ns).writes() == []


# --- least privilege, bad input -----------------------------------------------------------------


def test_secrets_only_in_joined_namespaces(fed: Fed, testbed: TestbedSpec) -> None:
    a = testbed.members[0].name
    block = member_block(fed, a)
    joined = fed.namespaces[5]
    assert _allowed(block, {"resource": "secrets", "verb": "get", "namespace": joined})
    assert not _allowed(block, {"resource": "secrets", "verb": "get", "namespace": fed.outside})
    assert not _allowed(block, {"resource": "secrets", "verb": "list"})  # cluster-wide
    with pytest.raises(ClusterForbidden):
        list_objects(block.api_client(), "v1", "Secret", fed.outside)

    host = client_for(testbed.host)
    apply(
        host,
        federated_object(
            fed.name, fed.outside, secret("token", {"t": "x"}), placement={"clusters": [a]}
        ),
    )
    REQUESTS.clear()
    rebalance(fed, fed.outside)
    assert member_writes() == {}
    state, message = states(host, "token", fed.outside)[a]
    assert state == "Failed"
    assert f"rejoin {a} with namespaces including {fed.outside}" in message
    assert find(a, "v1", "Secret", "token", fed.outside) is None


def test_bad_input_is_a_clear_error_and_changes_nothing(fed: Fed, testbed: TestbedSpec) -> None:
    ns = fed.namespaces[6]
    a = testbed.members[0].name
    host = client_for(testbed.host)
    cluster_scoped = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "evil"}}
    apply(
        host, federated_object(fed.name, ns, cluster_scoped, name="ns", placement={"clusters": [a]})
    )
    bad_patch = federated_object(
        fed.name,
        ns,
        config_map("patched", {"k": "v"}),
        placement={"clusters": [a]},
        overrides=[
            {"clusterName": a, "jsonPatch": [{"op": "replace", "path": "/data/nope", "value": "x"}]}
        ],
    )
    apply(host, bad_patch)
    nameless = federated_object(
        fed.name,
        ns,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}},
        name="nameless",
    )
    apply(host, nameless)
    REQUESTS.clear()
    with pytest.raises(InvalidRequest) as raised:
        rebalance(fed, ns)
    message = str(raised.value)
    assert (
        f"FederatedObject {ns}/ns: spec.template is a Namespace, which is cluster-scoped" in message
    )
    assert f"FederatedObject {ns}/patched: override for {a}" in message and "/data/nope" in message
    assert f"FederatedObject {ns}/nameless: spec.template has no metadata.name" in message
    assert member_writes() == {}
    assert find(a, "v1", "ConfigMap", "patched", ns) is None
    fo = get(host, API_VERSION, "FederatedObject", "ns", ns)
    assert fo["status"]["conditions"][0]["reason"] == "Invalid"
    assert LABEL_OBJECT  # the label every member object carries; none was written here
    assert not list_objects(client_for(a), "v1", "ConfigMap", ns, f"{LABEL_FEDERATION}={fed.name}")


def test_unjoin_removes_what_join_granted_and_what_was_propagated(
    fed: Fed, testbed: TestbedSpec
) -> None:
    """Last in the module: the federation loses a member here."""
    from fleetflow.flows.unjoin import unjoin_cluster
    from fleetflow.models import UnjoinRequest

    ns = fed.namespaces[5]
    c = testbed.members[-1].name
    host = client_for(testbed.host)
    on_c = {"clusters": [c]}
    apply(host, federated_object(fed.name, ns, config_map("app", {"k": "v"}), placement=on_c))
    apply(host, federated_object(fed.name, ns, secret("app-secret", {"k": "v"}), placement=on_c))
    rebalance(fed, ns)
    assert find(c, "v1", "Secret", "app-secret", ns) is not None
    # The module's earlier workloads still name c in their placements: unjoin refuses that
    # unless forced (test_every_kind shows the refusal); here only the clean-up is in question.
    unjoin_cluster(
        UnjoinRequest(
            federation=fed.name, member=c, keep_workloads=False, admin_block=c, force=True
        )
    )
    n = names(fed.name)
    rbac = "rbac.authorization.k8s.io/v1"
    for joined in fed.namespaces:
        assert find(c, rbac, "Role", n.secrets_role, joined) is None
        assert find(c, rbac, "RoleBinding", n.secrets_role, joined) is None
        assert find(c, "v1", "Namespace", joined, "") is not None  # the application's: kept
    poll_until(  # a foreground deletion finishes a moment later
        lambda: [
            k
            for k, x in (("ConfigMap", "app"), ("Secret", "app-secret"))
            if find(c, "v1", k, x, ns)
        ],
        lambda left: not left,
        timeout=20,
        waiting_for="propagated objects removed",
    )
    with pytest.raises(ResourceNotFound):
        get(client_for(c), rbac, "ClusterRole", n.custom_role)
