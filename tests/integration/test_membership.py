"""Bootstrap, join, unjoin and rotate on the test bed: real host, real members, real Prefect."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from prefect.settings import PREFECT_API_URL
from pydantic import SecretStr, ValidationError

from fleetflow.admission import PodSecurity, room_labels
from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import load_cluster, load_federation
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION
from fleetflow.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterTLSError,
    ClusterUnauthorized,
    ClusterUnreachable,
    InvalidRequest,
    MembershipError,
    ResourceNotFound,
    UnknownName,
)
from fleetflow.flows.bootstrap import bootstrap_control_plane
from fleetflow.flows.join import join_cluster
from fleetflow.flows.rotate import rotate_credentials
from fleetflow.flows.unjoin import unjoin_cluster
from fleetflow.kube import ClusterCredentials, api_client, apply, delete, get, list_objects
from fleetflow.membership import member_manifests, names
from fleetflow.models import BootstrapRequest, JoinRequest, RotateRequest, UnjoinRequest
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.demo import restricted
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import client_for, room
from tests.integration.manifests import deployment

pytestmark = pytest.mark.integration


def join(federation: str, member: str, region: str | None = None, **extra: Any) -> Any:
    return join_cluster(
        JoinRequest(
            federation=federation, member=member, admin_block=member, region=region, **extra
        )
    )


def member_block(federation: str, member: str) -> KubeCluster:
    block = KubeCluster.load(f"{federation}-{member}")
    assert isinstance(block, KubeCluster)
    return block


def resource_versions(testbed: TestbedSpec, federation: str) -> dict[str, str]:
    """resourceVersion of every object the federation owns, host and members."""
    versions: dict[str, str] = {}
    host = client_for(testbed.host)
    for crd in (
        "memberclusters.fleetflow.io",
        "federateddeployments.fleetflow.io",
        "federationoperations.fleetflow.io",
        "dnsendpoints.externaldns.k8s.io",
    ):
        obj = get(host, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd)
        versions[f"host/crd/{crd}"] = obj["metadata"]["resourceVersion"]
    ns = f"{federation}-system"
    for api, kind in (
        (API_VERSION, "MemberCluster"),
        ("v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io/v1", "Role"),
    ):
        for item in list_objects(host, api, kind, ns):
            versions[f"host/{kind}/{item['metadata']['name']}"] = item["metadata"][
                "resourceVersion"
            ]
    for member in testbed.members:
        client = client_for(member.name)
        for m in member_manifests(federation):
            meta = m["metadata"]
            try:
                obj = get(client, m["apiVersion"], m["kind"], meta["name"], meta.get("namespace"))
            except ResourceNotFound:
                continue
            versions[f"{member.name}/{m['kind']}/{meta['name']}"] = obj["metadata"][
                "resourceVersion"
            ]
        try:
            secrets = k8s.CoreV1Api(client).list_namespaced_secret(names(federation).namespace)
        except ResourceNotFound:
            continue
        for s in secrets.items:
            versions[f"{member.name}/Secret/{s.metadata.name}"] = s.metadata.resource_version
    return versions


def block_updated(name: str, slug: str = "fleetflow-kube-cluster") -> str:
    url = f"{PREFECT_API_URL.value()}/block_types/slug/{slug}/block_documents/name/{name}"
    response = httpx.get(url, timeout=10)
    response.raise_for_status()
    return str(response.json()["updated"])


def test_bootstrap_and_join_three_then_rerun_writes_nothing(
    federation: str, testbed: TestbedSpec
) -> None:
    for member in testbed.members:
        report = join(federation, member.name, member.region, ingress_address="10.0.0.1")
        kinds = {a.kind for a in report.writes()}
        assert {
            "ServiceAccount",
            "ClusterRole",
            "Secret",
            "MemberCluster",
            "KubeCluster block",
        } <= kinds
    host = client_for(testbed.host)
    registry = list_objects(host, API_VERSION, "MemberCluster", f"{federation}-system")
    assert sorted(m["metadata"]["name"] for m in registry) == sorted(
        m.name for m in testbed.members
    )
    for entry in registry:
        assert entry["spec"]["credentialsBlock"] == f"{federation}-{entry['metadata']['name']}"
        assert entry["status"]["kubernetesVersion"].startswith("v1.36.")
        assert "token" not in str(entry["spec"]).lower()
    stored = Federation.load(federation)
    assert isinstance(stored, Federation)
    assert sorted(stored.member_clusters) == sorted(
        f"{federation}-{m.name}" for m in testbed.members
    )

    before = resource_versions(testbed, federation)
    blocks_before = {m.name: block_updated(f"{federation}-{m.name}") for m in testbed.members}
    again = bootstrap_control_plane(
        BootstrapRequest(
            federation=federation, host_cluster=testbed.host, namespace=f"{federation}-system"
        )
    )
    assert again.writes() == []
    for member in testbed.members:
        assert (
            join(federation, member.name, member.region, ingress_address="10.0.0.1").writes() == []
        )
    assert resource_versions(testbed, federation) == before
    assert {
        m.name: block_updated(f"{federation}-{m.name}") for m in testbed.members
    } == blocks_before


def test_dry_run_bootstrap_lists_everything_and_writes_nothing(
    admin_blocks: list[str], testbed: TestbedSpec
) -> None:
    report = bootstrap_control_plane(
        BootstrapRequest(
            federation="dryrun", host_cluster=testbed.host, namespace="dryrun-system", dry_run=True
        )
    )
    planned = {(a.kind, a.name) for a in report.writes()}
    assert ("Namespace", "dryrun-system") in planned
    assert ("Federation block", "dryrun") in planned
    with pytest.raises(ResourceNotFound):
        get(client_for(testbed.host), "v1", "Namespace", "dryrun-system")
    with pytest.raises(ValueError):
        Federation.load("dryrun")


def test_member_token_is_least_privilege(federation: str, testbed: TestbedSpec) -> None:
    member = testbed.members[0].name
    join(federation, member)
    client = member_block(federation, member).api_client()
    assert isinstance(k8s.AppsV1Api(client).list_deployment_for_all_namespaces().items, list)
    with pytest.raises(ClusterForbidden) as secrets:
        k8s.CoreV1Api(client).list_namespaced_secret("kube-system")
    assert secrets.value.status == 403
    binding = {
        "metadata": {"name": "escalate"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"kind": "User", "name": "mallory"}],
    }
    with pytest.raises(ClusterForbidden):
        k8s.RbacAuthorizationV1Api(client).create_cluster_role_binding(binding)
    role = get(
        client_for(member),
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        f"fleetflow:{federation}:member",
    )
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert "*" not in verbs and "escalate" not in verbs and "bind" not in verbs
    assert all("secrets" not in rule["resources"] for rule in role["rules"])


def _pod(**extra: Any) -> dict[str, Any]:
    pod = restricted({"containers": [{"name": "app", "image": "nginx:1.27"}]})
    return {**pod, **extra}


def _workload(namespace: str, pod: dict[str, Any], name: str = "evil") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


ESCALATIONS: list[tuple[str, Callable[[str, str], dict[str, Any]], str]] = [
    # (what, the object in the room ``ns`` or elsewhere, what the refusal says)
    (
        "a Deployment in kube-system, as a controller's account",
        lambda ns, fed: _workload("kube-system", _pod(serviceAccountName="replicaset-controller")),
        "namespace kube-system is not a room of federation",
    ),
    (
        "a Deployment in a namespace join never opened",
        lambda ns, fed: _workload("default", _pod()),
        "namespace default is not a room",
    ),
    (
        "a hostPath pod in a room",
        lambda ns, fed: _workload(ns, _pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
        "may not mount a hostPath volume",
    ),
    (
        "a privileged container in a room",
        lambda ns, fed: _workload(
            ns,
            {"containers": [{"name": "c", "image": "x", "securityContext": {"privileged": True}}]},
        ),
        "may not run a privileged container",
    ),
    (
        "the host's network in a room",
        lambda ns, fed: _workload(ns, _pod(hostNetwork=True)),
        "host's network, PID or IPC",
    ),
    (
        "a namespace of its own at enforce=privileged",
        lambda ns, fed: {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": f"{ns}-mine",
                "labels": {
                    "fleetflow.io/room": fed,
                    "pod-security.kubernetes.io/enforce": "privileged",
                },
            },
        },
        "may only create namespaces labelled fleetflow.io/room",
    ),
    (
        "a namespace that is no room",
        lambda ns, fed: {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"{ns}-x"}},
        "may only create namespaces labelled",
    ),
    (
        "a Service that takes over an address cluster-wide (external IPs)",
        lambda ns, fed: {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "mitm", "namespace": ns},
            "spec": {"ports": [{"port": 53}], "externalIPs": ["10.96.0.10"]},
        },
        "may not give a Service external IPs",
    ),
    (
        "a token Secret for another account of a room",
        lambda ns, fed: {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/service-account-token",
            "metadata": {
                "name": "minted",
                "namespace": ns,
                "annotations": {"kubernetes.io/service-account.name": "default"},
            },
        },
        "may not create a service account token Secret but its own",
    ),
]


def _create(api: Any, obj: dict[str, Any]) -> None:
    """Create ``obj`` as a server-side dry run: admission runs, nothing persists."""
    namespace = obj["metadata"].get("namespace")
    if obj["kind"] == "Namespace":
        k8s.CoreV1Api(api).create_namespace(obj, dry_run="All")
    elif obj["kind"] == "Secret":
        k8s.CoreV1Api(api).create_namespaced_secret(namespace, obj, dry_run="All")
    elif obj["kind"] == "Service":
        k8s.CoreV1Api(api).create_namespaced_service(namespace, obj, dry_run="All")
    else:
        k8s.AppsV1Api(api).create_namespaced_deployment(namespace, obj, dry_run="All")


def test_a_stolen_member_token_cannot_escalate(
    federation: str, testbed: TestbedSpec, namespace: str
) -> None:
    """Each path from the member role to more than the federation's rooms, tried with the
    member's own token against its real apiserver (server-side dry run: nothing persists)."""
    member = testbed.members[0].name
    join(federation, member, namespaces=[namespace])  # the room, with Secrets
    stolen = member_block(federation, member).api_client()
    for what, build, refusal in ESCALATIONS:
        with pytest.raises(ClusterError, match=refusal):
            _create(stolen, build(namespace, federation))
        print(f"refused: {what}")
    # What the federation does is still allowed: a restricted workload in its room, and a new
    # room of its own at the federation's level.
    _create(stolen, _workload(namespace, _pod(), name="fine"))
    opened = {"name": f"{namespace}-new", "labels": room_labels(federation, PodSecurity.RESTRICTED)}
    _create(stolen, {"apiVersion": "v1", "kind": "Namespace", "metadata": opened})
    # Scaling a workload outside the rooms (a cluster's DNS, say) is refused as well.
    system = _workload("kube-system", _pod(), name=f"dns-{federation}")
    apply(client_for(member), system)
    try:
        with pytest.raises(ClusterError, match="not a room"):
            k8s.AppsV1Api(stolen).patch_namespaced_deployment_scale(
                system["metadata"]["name"], "kube-system", {"spec": {"replicas": 0}}, dry_run="All"
            )
    finally:
        delete(
            client_for(member), "apps/v1", "Deployment", system["metadata"]["name"], "kube-system"
        )


def test_rotation_revokes_a_token_minted_under_another_name(
    federation: str, testbed: TestbedSpec
) -> None:
    member = testbed.members[0].name
    join(federation, member)
    stolen = member_block(federation, member).api_client()
    n = names(federation)
    minted = {
        "metadata": {
            "name": "innocent-looking",
            "annotations": {"kubernetes.io/service-account.name": n.service_account},
        },
        "type": "kubernetes.io/service-account-token",
    }
    k8s.CoreV1Api(stolen).create_namespaced_secret(n.namespace, minted)
    rotate_credentials(RotateRequest(federation=federation, member=member))
    with pytest.raises(ResourceNotFound):
        k8s.CoreV1Api(client_for(member)).read_namespaced_secret("innocent-looking", n.namespace)


def test_unjoin_keep_and_remove(federation: str, testbed: TestbedSpec, namespace: str) -> None:
    keep, remove = testbed.members[0].name, testbed.members[1].name
    for member in (keep, remove):
        join(federation, member)
        room(member, namespace, federation)
        apply(
            client_for(member),
            deployment(namespace, "web", 1, labels={LABEL_FEDERATION: federation}),
        )
    old_token = member_block(federation, keep).token
    assert old_token is not None

    report = unjoin_cluster(UnjoinRequest(federation=federation, member=keep))
    assert get(client_for(keep), "apps/v1", "Deployment", "web", namespace)
    assert {a.kind for a in report.actions if a.verb == "left behind"} >= {"ServiceAccount"}
    creds = ClusterCredentials(
        name=keep,
        api_url=f"https://127.0.0.1:{testbed.port(keep)}",
        token=old_token,
        ca_data=_ca(keep),
    )
    deadline = time.monotonic() + 30
    while True:  # the apiserver drops a deleted token Secret from its cache within moments
        try:
            k8s.CoreV1Api(api_client(creds)).list_node()
        except ClusterUnauthorized:
            break
        assert time.monotonic() < deadline, "revoked token still accepted"
        time.sleep(0.2)

    unjoin_cluster(
        UnjoinRequest(
            federation=federation, member=remove, keep_workloads=False, admin_block=remove
        )
    )
    with pytest.raises(ResourceNotFound):
        get(client_for(remove), "apps/v1", "Deployment", "web", namespace)
    with pytest.raises(ResourceNotFound):
        get(
            client_for(remove),
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            f"fleetflow:{federation}:member",
        )
    for member in (keep, remove):
        with pytest.raises(ValueError):
            KubeCluster.load(f"{federation}-{member}")

        # Deleted in the foreground: gone once the host's garbage collector has seen it (on a
        # bed just started, a moment later).
        def registered() -> set[str]:
            found = list_objects(
                client_for(testbed.host), API_VERSION, "MemberCluster", f"{federation}-system"
            )
            return {m["metadata"]["name"] for m in found}

        poll_until(
            registered,
            lambda names: member not in names,  # noqa: B023 (waited for at once)
            timeout=30,
            waiting_for=f"the registration of {member} deleted",
        )
    stored = Federation.load(federation)
    assert isinstance(stored, Federation) and stored.member_clusters == []


def at_once(*runs: Callable[[], Any]) -> list[Any]:
    """Start every run together (each in a thread of its own, released by one barrier); what
    each returned or raised, in order."""
    start = threading.Barrier(len(runs))

    def released(run: Callable[[], Any]) -> Any:
        start.wait()
        try:
            return run()
        except Exception as exc:  # the caller asserts which runs may fail, and how
            return exc

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(released, runs))


def test_runs_at_once_never_drop_a_member_or_join_one_twice(
    federation: str, testbed: TestbedSpec
) -> None:
    """Joins, unjoins and a bootstrap rerun at once. Each edits the Federation block's member
    list; each read the block when it started and saved its own copy at its end, so the last to
    save dropped what the others had listed (a member joined but unlisted, refused by every flow
    until rejoined; a member unjoined but listed still). Two joins of one member at once both
    saved its credentials block: the second failed with Prefect's "already in use" traceback.
    Now a run that changes a member holds that member's lease (another run of it is refused
    with one line) and the block is read again and saved under the federation's own."""
    first, second = testbed.members[0].name, testbed.members[1].name
    listed = {f"{federation}-{first}", f"{federation}-{second}"}
    rerun = BootstrapRequest(
        federation=federation, host_cluster=testbed.host, namespace=f"{federation}-system"
    )
    outcomes = at_once(
        lambda: join(federation, first),
        lambda: join(federation, second),
        lambda: join(federation, second),
        lambda: bootstrap_control_plane(rerun),
    )
    failed = [o for o in outcomes if isinstance(o, Exception)]
    assert len(failed) <= 1, failed  # only the second join of one member may be refused
    for error in failed:
        assert isinstance(error, InvalidRequest), repr(error)
        assert f"another join, unjoin or rotation of {second}" in str(error)
    assert set(load_federation(federation).member_clusters) == listed
    tokens = k8s.CoreV1Api(client_for(second)).list_namespaced_secret(names(federation).namespace)
    assert len(tokens.items) == 1, [t.metadata.name for t in tokens.items]
    outcomes = at_once(
        lambda: unjoin_cluster(UnjoinRequest(federation=federation, member=first)),
        lambda: unjoin_cluster(UnjoinRequest(federation=federation, member=second)),
    )
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    assert load_federation(federation).member_clusters == []


def _ca(cluster: str) -> str:
    ca: str = bed.credentials(cluster).kubeconfig_dict()["clusters"][0]["cluster"][
        "certificate-authority-data"
    ]
    return ca


FORCED_UNJOIN_BOUND = 15.0
"""Seconds within which a forced unjoin of a stopped member finishes."""


def test_forced_unjoin_of_a_stopped_member(federation: str, testbed: TestbedSpec) -> None:
    member = testbed.members[2].name
    join(federation, member)
    try:
        bed.fault(member, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        with pytest.raises(MembershipError, match=r"cannot reach member .*Rerun with force"):
            unjoin_cluster(UnjoinRequest(federation=federation, member=member))
        assert get(
            client_for(testbed.host), API_VERSION, "MemberCluster", member, f"{federation}-system"
        )
        started = time.monotonic()
        report = unjoin_cluster(UnjoinRequest(federation=federation, member=member, force=True))
        assert time.monotonic() - started < FORCED_UNJOIN_BOUND
        left = {(a.kind, a.name) for a in report.actions if a.verb == "left behind"}
        assert ("ServiceAccount", f"fleetflow-{federation}") in left
        with pytest.raises(ResourceNotFound):
            get(
                client_for(testbed.host),
                API_VERSION,
                "MemberCluster",
                member,
                f"{federation}-system",
            )
        with pytest.raises(ValueError):
            KubeCluster.load(f"{federation}-{member}")
    finally:
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)


def test_join_interrupted_midway_leaves_host_and_blocks_then_resumes(
    federation: str, testbed: TestbedSpec
) -> None:
    member = testbed.members[1].name
    sa = names(federation)
    admin = k8s.CoreV1Api(client_for(member))
    stop = threading.Event()

    def kill_when_service_account_appears() -> None:
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                admin.read_namespaced_service_account(sa.service_account, sa.namespace)
            except ResourceNotFound:
                time.sleep(0.01)
                continue
            bed.fault(member, bed.Fault.KILL_APISERVER, progress=lambda m: None)
            return

    watcher = threading.Thread(target=kill_when_service_account_appears)
    watcher.start()
    try:
        with pytest.raises(ClusterUnreachable):
            join(federation, member)
    finally:
        stop.set()
        watcher.join()
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)
    with pytest.raises(ResourceNotFound):
        get(client_for(testbed.host), API_VERSION, "MemberCluster", member, f"{federation}-system")
    with pytest.raises(ValueError):
        KubeCluster.load(f"{federation}-{member}")
    stored = Federation.load(federation)
    assert isinstance(stored, Federation) and stored.member_clusters == []

    join(federation, member)
    assert get(
        client_for(testbed.host), API_VERSION, "MemberCluster", member, f"{federation}-system"
    )
    tokens = k8s.CoreV1Api(client_for(member)).list_namespaced_secret(sa.namespace).items
    assert [s.metadata.name for s in tokens] == [f"{sa.service_account}-token-1"]
    block = member_block(federation, member)
    assert k8s.AppsV1Api(block.api_client()).list_deployment_for_all_namespaces() is not None


def test_rotation_replaces_and_revokes_the_token(federation: str, testbed: TestbedSpec) -> None:
    member = testbed.members[0].name
    join(federation, member)
    old = member_block(federation, member).token
    report = rotate_credentials(RotateRequest(federation=federation, member=member))
    new = member_block(federation, member).token
    assert old is not None and new is not None
    assert new.get_secret_value() != old.get_secret_value()
    assert [a.line() for a in report.writes()] == [
        f"{member}: create Secret fleetflow-{federation}/fleetflow-{federation}-token-2",
        f"prefect: update KubeCluster block {federation}-{member}",
        f"{member}: delete Secret fleetflow-{federation}/fleetflow-{federation}-token-1",
    ]
    k8s.CoreV1Api(member_block(federation, member).api_client()).list_node()
    url = f"https://127.0.0.1:{testbed.port(member)}"
    stale = ClusterCredentials(name=member, api_url=url, ca_data=_ca(member), token=old)
    with pytest.raises(ClusterUnauthorized):
        k8s.CoreV1Api(api_client(stale)).list_node()


def test_no_credentials_in_logs_artifacts_or_parameters(
    federation: str, testbed: TestbedSpec
) -> None:
    member = testbed.members[0].name
    join(federation, member)
    rotate_credentials(RotateRequest(federation=federation, member=member))
    token = member_block(federation, member).token
    assert token is not None
    admin = bed.credentials(member).kubeconfig_dict()["users"][0]["user"]
    secrets = [
        token.get_secret_value(),
        admin["client-key-data"],
        admin["client-certificate-data"],
        base64.b64decode(admin["client-key-data"]).decode().splitlines()[1],
    ]
    api = PREFECT_API_URL.value()
    texts = []
    for path in ("logs/filter", "artifacts/filter", "flow_runs/filter", "task_runs/filter"):
        offset = 0
        while True:
            page = httpx.post(f"{api}/{path}", json={"limit": 200, "offset": offset}, timeout=30)
            page.raise_for_status()
            items = page.json()
            texts.append(page.text)
            if len(items) < 200:
                break
            offset += 200
    everything = "\n".join(texts)
    assert federation in everything  # the runs are there to be searched
    for secret in secrets:
        assert secret not in everything


def test_bad_input_is_refused_before_any_write(
    federation: str, testbed: TestbedSpec, unused_port: int
) -> None:
    member = testbed.members[0].name
    before = resource_versions(testbed, federation)

    with pytest.raises(UnknownName, match="no KubeCluster block named 'nope'"):
        join_cluster(JoinRequest(federation=federation, member=member, admin_block="nope"))

    KubeCluster(
        api_url=f"https://127.0.0.1:{unused_port}", token=SecretStr("x"), request_timeout=2
    ).save("unreachable-admin", overwrite=True)
    with pytest.raises(ClusterUnreachable, match="cluster 'unreachable-admin'"):
        join_cluster(
            JoinRequest(federation=federation, member=member, admin_block="unreachable-admin")
        )

    wrong_ca = _ca(testbed.members[1].name)
    KubeCluster(
        api_url=f"https://127.0.0.1:{testbed.port(member)}", ca_data=wrong_ca, token=SecretStr("x")
    ).save("wrong-ca-admin", overwrite=True)
    with pytest.raises(ClusterTLSError, match="TLS handshake failed"):
        join_cluster(
            JoinRequest(federation=federation, member=member, admin_block="wrong-ca-admin")
        )

    with pytest.raises(ValidationError, match="is not a DNS label"):
        JoinRequest(federation=federation, member="Not_A_Label", admin_block=member)

    assert resource_versions(testbed, federation) == before
    with pytest.raises(ValueError):
        KubeCluster.load(f"{federation}-{member}")


def test_no_parameter_or_host_object_redirects_a_credentials_block(
    federation: str, testbed: TestbedSpec
) -> None:
    a, b = testbed.members[0].name, testbed.members[1].name
    # An admin's block that happens to bear the name join would give a member's: never
    # overwritten with a member token (nor the host's, nor another federation's).
    admin = load_cluster(testbed.host)
    admin.save(f"{federation}-{a}", overwrite=True)
    saved = block_updated(f"{federation}-{a}")
    before = resource_versions(testbed, federation)
    with pytest.raises(MembershipError, match=f"'{federation}-{a}', which exists and join never"):
        join(federation, a)
    assert block_updated(f"{federation}-{a}") == saved
    assert resource_versions(testbed, federation) == before
    KubeCluster.delete(f"{federation}-{a}")

    # Bootstrap does not quietly re-point the federation at another host.
    with pytest.raises(InvalidRequest, match=f"is hosted by '{testbed.host}', not '{b}'"):
        bootstrap_control_plane(
            BootstrapRequest(
                federation=federation, host_cluster=b, namespace=f"{federation}-system"
            )
        )
    assert load_federation(federation).host_cluster == testbed.host

    # A registration on the host naming the host's admin block is not followed.
    join(federation, b)
    host = client_for(testbed.host)
    entry = {
        "apiVersion": API_VERSION,
        "kind": "MemberCluster",
        "metadata": {"name": b, "namespace": f"{federation}-system"},
        "spec": {"credentialsBlock": testbed.host},
    }
    apply(host, entry, manager="attacker")
    saved = block_updated(testbed.host)
    with pytest.raises(MembershipError, match=f"names credentials block '{testbed.host}', which"):
        rotate_credentials(RotateRequest(federation=federation, member=b))
    assert block_updated(testbed.host) == saved
    assert load_cluster(testbed.host).kubeconfig is not None  # still the admin's


def test_a_cluster_in_another_federation_is_refused(federation: str, testbed: TestbedSpec) -> None:
    member = testbed.members[2].name
    join(federation, member)
    other = f"{federation}x"
    bootstrap_control_plane(
        BootstrapRequest(federation=other, host_cluster=testbed.host, namespace=f"{other}-system")
    )
    try:
        before = resource_versions(testbed, other)
        with pytest.raises(
            MembershipError, match=rf"already a member of federation {federation}; unjoin"
        ):
            join(other, member)
        assert resource_versions(testbed, other) == before
        with pytest.raises(ValueError):
            KubeCluster.load(f"{other}-{member}")
    finally:
        k8s.CoreV1Api(client_for(testbed.host)).delete_namespace(f"{other}-system")
        Federation.delete(other)


@pytest.fixture
def unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
