"""Rebalance on the test bed: weights, totals, overrides, capacity, zero-write no-ops, removal,
and bad input. These tests only place workloads, each in a namespace of its own, so they share one
joined federation (``calm``); those that stop clusters are in test_rebalance_faults.py."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client as k8s

from fleetflow.controlplane import API_VERSION
from fleetflow.errors import ClusterUnreachable, PlacementError, ResourceNotFound, UnknownName
from fleetflow.federated import ANNOTATION_ORPHAN, FINALIZER, LABEL_WORKLOAD
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import apply, delete, get, wait_deployment_ready
from fleetflow.kube.client import REQUESTS
from fleetflow.models import RebalanceRequest
from fleetflow.polling import poll_until
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import client_for, is_host, recorded_task_runs, room
from tests.integration.manifests import deployment

pytestmark = pytest.mark.integration


def workload(
    federation: str,
    namespace: str,
    replicas: int,
    weights: dict[str, int] | None = None,
    **placement: Any,
) -> dict[str, Any]:
    return federated_deployment(
        federation, "web", namespace, replicas, placement={"weights": weights or {}, **placement}
    )


def spread(testbed: TestbedSpec, namespace: str) -> dict[str, tuple[int, int]]:
    """(spec replicas, ready replicas) of the propagated Deployment in each reachable member."""
    found = {}
    for m in testbed.members:
        try:
            d = get(client_for(m.name), "apps/v1", "Deployment", "web", namespace)
        except (ResourceNotFound, ClusterUnreachable):
            continue
        found[m.name] = (d["spec"]["replicas"], (d.get("status") or {}).get("readyReplicas", 0))
    return found


def settled(testbed: TestbedSpec, namespace: str, expected: dict[str, tuple[int, int]]) -> None:
    """The spread becomes ``expected`` (removed Deployments take a moment to be gone)."""
    found = poll_until(
        lambda: spread(testbed, namespace),
        lambda seen: seen == expected,
        timeout=30,
        waiting_for=f"the spread {expected}",
    )
    assert found == expected


def rebalance(federation: str, namespace: str, **options: Any) -> Any:
    return rebalance_replicas(
        RebalanceRequest(federation=federation, namespace=namespace, **options)
    )


def test_weights_and_totals_converge_and_a_noop_writes_nothing(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    apply(host, workload(calm, namespace, 8, {a: 2, b: 1, c: 1}))
    rebalance(calm, namespace)
    assert spread(testbed, namespace) == {a: (4, 4), b: (2, 2), c: (2, 2)}
    status = get(host, API_VERSION, "FederatedDeployment", "web", namespace)["status"]
    assert {s["name"]: (s["desired"], s["ready"]) for s in status["clusters"]} == {
        a: (4, 4),
        b: (2, 2),
        c: (2, 2),
    }

    apply(host, workload(calm, namespace, 12, {a: 1, b: 1, c: 2}))
    rebalance(calm, namespace)
    assert spread(testbed, namespace) == {a: (3, 3), b: (3, 3), c: (6, 6)}

    rebalance(calm, namespace)  # records the ready counts it now sees
    versions = {
        m.name: get(client_for(m.name), "apps/v1", "Deployment", "web", namespace)["metadata"][
            "resourceVersion"
        ]
        for m in testbed.members
    }
    fd_version = get(host, API_VERSION, "FederatedDeployment", "web", namespace)["metadata"][
        "resourceVersion"
    ]
    REQUESTS.clear()
    state = rebalance_replicas(
        RebalanceRequest(federation=calm, namespace=namespace), return_state=True
    )
    report = state.result()
    assert report.writes() == []
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET"} == {}
    assert versions == {
        m.name: get(client_for(m.name), "apps/v1", "Deployment", "web", namespace)["metadata"][
            "resourceVersion"
        ]
        for m in testbed.members
    }
    assert (
        fd_version
        == get(host, API_VERSION, "FederatedDeployment", "web", namespace)["metadata"][
            "resourceVersion"
        ]
    )
    # What a no-op run on a schedule costs Prefect: one task run for the host's reads and, per
    # member, one probe and one check of what it runs; nothing per write step that has nothing
    # to write.
    steps = recorded_task_runs(state.state_details.flow_run_id, at_least=1 + len(testbed.members))
    kinds = {r.name.rpartition("-")[0] for r in steps}
    print(f"a no-op rebalance: {len(steps)} task runs: {sorted(r.name for r in steps)}")
    assert len(steps) <= 1 + 2 * len(testbed.members), sorted(r.name for r in steps)
    assert kinds <= {"observe_host", "observe_member", "propagate_member"}, kinds


def test_override_lands_only_where_it_should(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    eu = next(m.name for m in testbed.members if m.region == "eu-west")
    fd = workload(calm, namespace, 3)
    fd["spec"]["overrides"] = [{"clusterName": eu, "image": "nginx:1.27-eu"}]
    apply(client_for(testbed.host), fd)
    rebalance(calm, namespace)
    for m in testbed.members:
        d = get(client_for(m.name), "apps/v1", "Deployment", "web", namespace)
        image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == ("nginx:1.27-eu" if m.name == eu else "nginx:1.27"), m.name
        assert d["metadata"]["labels"][LABEL_WORKLOAD] == "web"


def test_an_override_that_moves_the_workload_into_another_namespace_is_refused(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    eu = next(m.name for m in testbed.members if m.region == "eu-west")
    fd = workload(calm, namespace, 3)
    fd["spec"]["overrides"] = [
        {"clusterName": eu, "patch": {"metadata": {"namespace": "kube-system"}}}
    ]
    apply(client_for(testbed.host), fd)
    REQUESTS.clear()
    with pytest.raises(PlacementError, match=f"an override for {eu} changes the workload's"):
        rebalance(calm, namespace)
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET" and not is_host(k[0])} == {}
    with pytest.raises(ResourceNotFound):
        get(client_for(eu), "apps/v1", "Deployment", "web", "kube-system")
    assert spread(testbed, namespace) == {}


def test_dry_run_plans_and_writes_nothing(calm: str, testbed: TestbedSpec, namespace: str) -> None:
    apply(client_for(testbed.host), workload(calm, namespace, 3))
    REQUESTS.clear()
    report = rebalance(calm, namespace, dry_run=True)
    assert report.dry_run
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET"} == {}
    assert spread(testbed, namespace) == {}


def test_deselected_member_loses_the_workload(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    apply(host, workload(calm, namespace, 4))
    rebalance(calm, namespace)
    assert set(spread(testbed, namespace)) == {a, b, c}
    apply(host, workload(calm, namespace, 4, clusters=[a, b]))
    rebalance(calm, namespace)
    # A deleted Deployment lingers while its pods terminate: wait for it to go.
    settled(testbed, namespace, {a: (2, 2), b: (2, 2)})
    by_region = workload(
        calm,
        namespace,
        4,
        clusterSelector={"matchLabels": {"topology.kubernetes.io/region": "eu-west"}},
    )
    apply(host, by_region)
    rebalance(calm, namespace)
    settled(testbed, namespace, {c: (4, 4)})


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        ({"weights": {"us-east-1": 0, "us-east-2": 0, "eu-west-1": 0}}, "every weight is zero"),
        ({"clusters": ["us-east-1", "mars-1"]}, "unknown cluster(s) mars-1"),
        (
            {"clusterSelector": {"matchLabels": {"topology.kubernetes.io/region": "mars"}}},
            "selects no member cluster",
        ),
    ],
)
def test_bad_placement_is_a_clear_error_and_changes_nothing(
    calm: str, testbed: TestbedSpec, namespace: str, placement: dict[str, Any], message: str
) -> None:
    fd = workload(calm, namespace, 3)
    fd["spec"]["placement"] = placement
    apply(client_for(testbed.host), fd)
    REQUESTS.clear()
    with pytest.raises(PlacementError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rebalance(calm, namespace)
    member_writes = {k: n for k, n in REQUESTS.items() if k[1] != "GET" and not is_host(k[0])}
    assert member_writes == {}
    assert spread(testbed, namespace) == {}


def test_unknown_workload_name_is_a_clear_error(calm: str, namespace: str) -> None:
    with pytest.raises(UnknownName, match="no FederatedDeployment named 'nope'"):
        rebalance(calm, namespace, name="nope")


def test_capacity_mode_spreads_by_free_room_and_never_overfills(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, c = (m.name for m in testbed.members)
    filler = client_for(a)  # someone else's workload takes most of a's CPU
    room(a, namespace, calm)
    apply(filler, deployment(namespace, "filler", 4, image="busybox", cpu="4"))
    wait_deployment_ready(filler, namespace, "filler", timeout=60)
    fd = workload(calm, namespace, 10, mode="Capacity")
    fd["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"cpu": "2"}
    }
    host = client_for(testbed.host)
    apply(host, fd)
    rebalance(calm, namespace, wait_timeout=30)
    placed = spread(testbed, namespace)
    assert sum(s for s, _ in placed.values()) == 10
    assert all(r == s for s, r in placed.values()), placed  # every pod found room
    assert placed[a][0] < placed[b][0] and placed[a][0] < placed[c][0]

    fd["spec"]["replicas"] = 40  # more than the three members can hold
    apply(host, fd)
    report = rebalance(calm, namespace, wait_timeout=30)
    placed = spread(testbed, namespace)
    assert all(r == s for s, r in placed.values()), (placed, report.notes)
    status = get(host, API_VERSION, "FederatedDeployment", "web", namespace)["status"]
    assert status["unplaced"] == 40 - sum(s for s, _ in placed.values()) > 0
    pending = [
        p.metadata.name
        for m in testbed.members
        for p in k8s.CoreV1Api(client_for(m.name))
        .list_namespaced_pod(namespace, label_selector="app=web")
        .items
        if p.status.phase != "Running"
    ]
    assert pending == []


def _gone(testbed: TestbedSpec, namespace: str, clusters: list[str]) -> bool:
    """No copy of the workload left in these members (a Foreground deletion may still be
    finishing: wait for the object itself to go)."""
    for name in clusters:
        try:
            get(client_for(name), "apps/v1", "Deployment", "web", namespace)
        except ResourceNotFound:
            continue
        return False
    return True


def _fd_gone(host: Any, namespace: str) -> bool:
    try:
        get(host, API_VERSION, "FederatedDeployment", "web", namespace)
    except ResourceNotFound:
        return True
    return False


def test_deleting_a_federated_workload_removes_its_deployments_from_every_member(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    members = [m.name for m in testbed.members]
    host = client_for(testbed.host)
    apply(host, workload(calm, namespace, 3))
    rebalance(calm, namespace)
    assert set(spread(testbed, namespace)) == set(members)
    assert (
        FINALIZER
        in get(host, API_VERSION, "FederatedDeployment", "web", namespace)["metadata"]["finalizers"]
    )
    delete(host, API_VERSION, "FederatedDeployment", "web", namespace)
    assert not _fd_gone(host, namespace)  # held until the members are clean
    report = rebalance(calm, namespace)
    assert sorted(a.cluster for a in report.writes() if a.kind == "Deployment") == sorted(members)
    poll_until(lambda: _gone(testbed, namespace, members), bool, timeout=30, waiting_for="copies")
    poll_until(lambda: _fd_gone(host, namespace), bool, timeout=10, waiting_for="finalizer")
    assert rebalance(calm, namespace).writes() == []


def test_an_orphaning_delete_leaves_the_deployments_running(
    calm: str, testbed: TestbedSpec, namespace: str
) -> None:
    host = client_for(testbed.host)
    fd = workload(calm, namespace, 3)
    fd["metadata"]["annotations"] = {ANNOTATION_ORPHAN: "true"}
    apply(host, fd)
    rebalance(calm, namespace)
    delete(host, API_VERSION, "FederatedDeployment", "web", namespace)
    rebalance(calm, namespace)
    poll_until(lambda: _fd_gone(host, namespace), bool, timeout=10, waiting_for="finalizer")
    assert spread(testbed, namespace) == {m.name: (1, 1) for m in testbed.members}
