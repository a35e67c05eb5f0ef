"""Rebalance while members fail: replicas leave a member past the health threshold and come
back rate-limited, and a member unreachable when its workload is deleted is cleaned once it is
back. Each test stops a cluster, so each has a federation of its own (the calm tests share one in
test_rebalance.py, and a cluster is a member of one federation at a time)."""

from __future__ import annotations

import copy
import itertools

import pytest
from kubernetes import client as k8s

from fleetflow.controlplane import API_VERSION
from fleetflow.kube import apply, delete, get
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import client_for
from tests.integration.test_rebalance import _fd_gone, _gone, rebalance, spread, workload

pytestmark = pytest.mark.integration


def test_failover_past_the_threshold_and_rate_limited_failback(
    joined: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, c = (m.name for m in testbed.members)
    apply(client_for(testbed.host), copy.deepcopy(workload(joined, namespace, 9)))
    rebalance(joined, namespace, max_moves=1)
    assert spread(testbed, namespace) == {a: (3, 3), b: (3, 3), c: (3, 3)}
    try:
        bed.fault(b, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        rebalance(joined, namespace, max_moves=1)  # one failed probe: Suspect, nothing moves
        assert spread(testbed, namespace) == {a: (3, 3), c: (3, 3)}
        rebalance(joined, namespace, max_moves=1)  # second: Unhealthy, its 3 replicas move
        after = spread(testbed, namespace)
        assert sum(s for s, _ in after.values()) == 9 and all(r == s for s, r in after.values())
        assert set(after) == {a, c}
    finally:
        bed.fault(b, bed.Fault.START_CLUSTER, progress=lambda m: None)
    rebalance(joined, namespace, max_moves=1)  # answering again: Recovering, holds nothing
    assert spread(testbed, namespace)[b][0] == 0  # scaled to zero; pods may still be going
    seen = [spread(testbed, namespace)]
    for run in range(3):  # Healthy: replicas come back, at most one moved per run
        rebalance(joined, namespace, max_moves=1)
        seen.append(spread(testbed, namespace))
        if run == 0:
            _fails_again_and_the_others_keep_theirs(joined, testbed, namespace, b)
    for before, after in itertools.pairwise(seen):
        moved = sum(max(0, after[m][0] - before[m][0]) for m in after)
        assert moved <= 1
        assert sum(s for s, _ in after.values()) == 9
    assert seen[-1] == {a: (3, 3), b: (3, 3), c: (3, 3)}
    assert k8s.CoreV1Api(client_for(b)).list_namespaced_pod(namespace).items


def _fails_again_and_the_others_keep_theirs(
    federation: str, testbed: TestbedSpec, namespace: str, member: str
) -> None:
    """Make-before-break while replicas return: a member that stops answering again gains
    nothing while it is Suspect, so the others are not scaled down for replicas nobody starts
    (seen on make up: a recovered region's rebalance ran as it went down again)."""
    before = {m: n for m, (n, _) in spread(testbed, namespace).items() if m != member}
    try:
        bed.fault(member, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        rebalance(federation, namespace, max_moves=1)  # Suspect: kept, and nothing taken away
        assert {m: n for m, (n, _) in spread(testbed, namespace).items()} == before
    finally:
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)


def test_a_member_unreachable_at_deletion_is_cleaned_when_it_is_back(
    joined: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    apply(host, workload(joined, namespace, 3))
    rebalance(joined, namespace)
    try:
        bed.fault(c, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        delete(host, API_VERSION, "FederatedDeployment", "web", namespace)
        rebalance(joined, namespace)
        poll_until(lambda: _gone(testbed, namespace, [a, b]), bool, timeout=30, waiting_for="a, b")
        held = get(host, API_VERSION, "FederatedDeployment", "web", namespace)
        assert held["status"]["conditions"][0]["type"] == "Deleting"
        assert c in held["status"]["conditions"][0]["message"]
    finally:
        bed.fault(c, bed.Fault.START_CLUSTER, progress=lambda m: None)
    assert not _gone(testbed, namespace, [c])  # the copy it ran is still there
    rebalance(joined, namespace)
    poll_until(lambda: _gone(testbed, namespace, [c]), bool, timeout=30, waiting_for="c clean")
    poll_until(lambda: _fd_gone(host, namespace), bool, timeout=10, waiting_for="finalizer")
