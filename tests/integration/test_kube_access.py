"""The access layer against real apiservers: apply, scale, wait, errors, isolation."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s

from fleetflow.errors import (
    ClusterForbidden,
    ClusterTimeout,
    ClusterTLSError,
    ClusterUnauthorized,
    ClusterUnreachable,
    ResourceNotFound,
    WaitTimeout,
)
from fleetflow.kube import ClusterCredentials, api_client, apply, get, wait_deployment_ready
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import client_for
from tests.integration.manifests import deployment

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace(namespace: str, testbed: TestbedSpec) -> str:
    """The test's namespace in every member too, a plain one (no federation's room): these
    tests use the Kubernetes client alone."""
    for member in testbed.members:
        k8s.CoreV1Api(client_for(member.name)).create_namespace({"metadata": {"name": namespace}})
    return namespace


def test_applied_deployment_turns_ready_on_kwok_nodes(testbed: TestbedSpec, namespace: str) -> None:
    member = testbed.members[0].name
    client = client_for(member)
    apply(client, deployment(namespace, "web", 3))
    ready = wait_deployment_ready(client, namespace, "web", timeout=60)
    assert ready["status"]["readyReplicas"] == 3
    pods = k8s.CoreV1Api(client).list_namespaced_pod(namespace, label_selector="app=web").items
    nodes = {n.metadata.name for n in k8s.CoreV1Api(client).list_node().items}
    assert len(pods) == 3
    assert all(p.status.phase == "Running" and p.spec.node_name in nodes for p in pods)

    apply(client, deployment(namespace, "web", 5))  # how fleetflow scales: apply the count
    assert (
        wait_deployment_ready(client, namespace, "web", timeout=60)["status"]["readyReplicas"] == 5
    )


def test_reapplying_the_same_manifest_writes_nothing(testbed: TestbedSpec, namespace: str) -> None:
    client = client_for(testbed.members[1].name)
    # No controller writes a ConfigMap, so its resourceVersion moves only if apply wrote.
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": namespace},
        "data": {"a": "1"},
    }
    first = apply(client, config)
    second = apply(client, config)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    assert {m["manager"] for m in second["metadata"]["managedFields"]} == {"fleetflow"}
    changed = apply(client, {**config, "data": {"a": "2"}})
    assert changed["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
    # A Deployment's status is written by its controller meanwhile, so judge it by its spec
    # generation and by when fleetflow last touched its fields.
    manifest = deployment(namespace, "api", 1)
    live = apply(client, manifest)
    again = apply(client, manifest)

    def ours(obj: dict[str, Any]) -> Any:
        return next(
            m["time"] for m in obj["metadata"]["managedFields"] if m["manager"] == "fleetflow"
        )

    assert again["metadata"]["generation"] == live["metadata"]["generation"]
    assert ours(again) == ours(live)
    changed = apply(client, deployment(namespace, "api", 1, image="nginx:1.28"))
    assert changed["metadata"]["generation"] == live["metadata"]["generation"] + 1


def test_wait_past_the_deadline_says_what_it_saw(testbed: TestbedSpec, namespace: str) -> None:
    client = client_for(testbed.members[0].name)
    apply(client, deployment(namespace, "huge", 2, cpu="500"))
    started = time.monotonic()
    with pytest.raises(WaitTimeout, match=r"huge not ready after 3s \(ready 0/2\)"):
        wait_deployment_ready(client, namespace, "huge", timeout=3)
    assert time.monotonic() - started < 6


def test_two_clusters_used_at_once_never_cross(testbed: TestbedSpec, namespace: str) -> None:
    a, b = testbed.members[0].name, testbed.members[1].name
    clients = {a: client_for(a), b: client_for(b)}
    errors: list[BaseException] = []

    def write(cluster: str) -> None:
        try:
            core = k8s.CoreV1Api(clients[cluster])
            for i in range(20):
                core.create_namespaced_config_map(
                    namespace, {"metadata": {"name": f"{cluster}-{i}"}, "data": {"at": cluster}}
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c,)) for c in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for cluster, other in ((a, b), (b, a)):
        maps = k8s.CoreV1Api(clients[cluster]).list_namespaced_config_map(namespace).items
        written = {m.metadata.name for m in maps if m.metadata.name != "kube-root-ca.crt"}
        assert written == {f"{cluster}-{i}" for i in range(20)}
        assert not any(name.startswith(other) for name in written)
    # The kubernetes client's process-wide default configuration was never touched.
    default = k8s.Configuration.get_default_copy()
    assert "127.0.0.1" not in (default.host or "") and not default.api_key


def test_stopped_cluster_is_unreachable_within_the_timeout(testbed: TestbedSpec) -> None:
    member = testbed.members[1].name
    client = client_for(member, timeout=3)
    try:
        bed.fault(member, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        started = time.monotonic()
        with pytest.raises(ClusterUnreachable) as info:
            k8s.CoreV1Api(client).list_node()
        assert time.monotonic() - started < 3
        assert f"cluster {member!r}" in str(info.value)
        assert "check that its API server is running" in str(info.value)
    finally:
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung apiserver)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


def test_hung_apiserver_times_out_at_the_request_timeout(silent_server: int) -> None:
    creds = ClusterCredentials(
        name="hung", api_url=f"https://127.0.0.1:{silent_server}", token="t", request_timeout=1.5
    )
    started = time.monotonic()
    with pytest.raises(ClusterTimeout, match=r"cluster 'hung': request timed out after 1.5s"):
        k8s.CoreV1Api(api_client(creds)).list_node()
    assert 1.4 < time.monotonic() - started < 4


def test_wrong_ca_is_a_tls_error(testbed: TestbedSpec) -> None:
    target, other = testbed.members[0].name, testbed.members[2].name
    other_ca = bed.credentials(other).kubeconfig_dict()["clusters"][0]["cluster"][
        "certificate-authority-data"
    ]
    creds = ClusterCredentials(
        name=target,
        api_url=f"https://127.0.0.1:{testbed.port(target)}",
        ca_data=other_ca,
        token="irrelevant",
    )
    with pytest.raises(ClusterTLSError, match=rf"cluster '{target}': TLS handshake failed"):
        k8s.CoreV1Api(api_client(creds)).list_node()


def test_bad_token_is_unauthorized_and_limited_token_is_forbidden(
    testbed: TestbedSpec, namespace: str
) -> None:
    member = testbed.members[0].name
    admin = client_for(member)
    ca = bed.credentials(member).kubeconfig_dict()["clusters"][0]["cluster"][
        "certificate-authority-data"
    ]
    url = f"https://127.0.0.1:{testbed.port(member)}"
    bogus = ClusterCredentials(name=member, api_url=url, ca_data=ca, token="not-a-token")
    with pytest.raises(ClusterUnauthorized, match="HTTP 401"):
        k8s.CoreV1Api(api_client(bogus)).list_node()

    core = k8s.CoreV1Api(admin)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    limited = ClusterCredentials(name=member, api_url=url, ca_data=ca, token=token)
    with pytest.raises(ClusterForbidden) as info:
        k8s.CoreV1Api(api_client(limited)).list_namespaced_secret("kube-system")
    assert info.value.status == 403
    assert 'cannot list resource "secrets"' in str(info.value)
    assert token not in str(info.value)


def test_missing_object_is_not_found(testbed: TestbedSpec, namespace: str) -> None:
    client = client_for(testbed.members[0].name)
    with pytest.raises(ResourceNotFound, match="not found"):
        get(client, "apps/v1", "Deployment", "absent", namespace)
    with pytest.raises(ResourceNotFound, match="no kind Widget in apps/v1"):
        get(client, "apps/v1", "Widget", "x", namespace)
