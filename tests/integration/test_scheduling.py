"""Custom scheduling on the test bed: a stopped region sends a workload to its next affinity
group and back, a spread that cannot be met is reported and changes nothing, and a NoExecute
taint set with ``fleetflow taint`` drains a member make-before-break."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fleetflow.cli.stack import federate_testbed
from fleetflow.controlplane import API_VERSION, REGION_LABEL
from fleetflow.errors import InvalidResource, PlacementError
from fleetflow.flows.taint import taint_member
from fleetflow.kube import apply, get
from fleetflow.kube.client import REQUESTS
from fleetflow.models import TaintRequest
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import a_federation, client_for, fleetflow, is_host
from tests.integration.test_failover import Sampler, answer, exposed, ingress
from tests.integration.test_rebalance import rebalance

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def regions(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    """One federation for the module, joined with the test bed's DNS (so a workload can be
    exposed). The tests run in file order: the one that stops a region last."""
    with a_federation(testbed, join=False) as name:
        federate_testbed(testbed, name, namespace=f"{name}-system")
        yield name


US_FIRST = {
    "affinityGroups": [
        {
            "name": "us",
            "clusterSelector": {
                "matchExpressions": [{"key": REGION_LABEL, "operator": "In", "values": ["us-east"]}]
            },
        },
        {"name": "eu", "clusterSelector": {"matchLabels": {REGION_LABEL: "eu-west"}}},
    ]
}
TWO_REGIONS = {"spreadConstraints": [{"spreadBy": "region", "minGroups": 2, "maxGroups": 2}]}


class Traffic(Sampler):
    """Samples, in this order, the member's Ready replicas of web and whether web's DNS answer
    lists it: a sample with none Ready and still listed is traffic sent to nothing."""

    def __init__(self, testbed: TestbedSpec, namespace: str, member: str) -> None:
        super().__init__(testbed, namespace, [member])
        self.address = ingress(testbed, member)[0]

    def sample(self) -> tuple[int, bool]:
        testbed, namespace, (member,) = self.args_
        ready = running(testbed, namespace, "web").get(member, 0)
        return ready, self.address in answer(testbed, "web", namespace)

    def sent_to_nothing(self) -> list[tuple[int, bool]]:
        return [(ready, listed) for ready, listed in self.samples if listed and not ready]


def running(testbed: TestbedSpec, namespace: str, name: str) -> dict[str, int]:
    """Ready replicas of ``name`` on each reachable member that runs any."""
    found = {}
    for member in testbed.members:
        try:
            d = get(client_for(member.name, timeout=2), "apps/v1", "Deployment", name, namespace)
        except Exception:  # gone or unreachable: runs nothing we can count
            continue
        ready = (d.get("status") or {}).get("readyReplicas", 0)
        if ready:
            found[member.name] = ready
    return found


def conditions(testbed: TestbedSpec, namespace: str, name: str) -> list[dict[str, Any]]:
    fd = get(client_for(testbed.host), API_VERSION, "FederatedDeployment", name, namespace)
    return (fd.get("status") or {}).get("conditions") or []


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (
            {"clusterSelector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}},
            'supported values: "In", "NotIn", "Exists", "DoesNotExist"',
        ),
        (
            {
                "affinityGroups": [
                    {
                        "name": "g",
                        "clusterSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]},
                    }
                ]
            },
            "In and NotIn need values",
        ),
        (
            {"affinityGroups": [{"name": "g", "clusters": []}]},
            "clusters in body should have at least 1 items",
        ),
        ({"tolerations": [{"operator": "Exists"}]}, "key: Required value"),
        ({"tolerations": [{"key": "fleetflow.io/fenced"}]}, "a fence cannot be tolerated"),
        (
            {"spreadConstraints": [{"spreadBy": "region", "minGroups": 3, "maxGroups": 2}]},
            "minGroups must not be above maxGroups",
        ),
    ],
)
def test_the_crd_refuses_bad_rules_at_apply(
    regions: str, testbed: TestbedSpec, namespace: str, placement: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidResource) as refused:
        apply(
            client_for(testbed.host),
            federated_deployment(regions, "web", namespace, 3, placement=placement),
        )
    assert message in str(refused.value)


def test_spread_above_the_regions_that_exist_is_refused_before_any_write(
    regions: str, testbed: TestbedSpec, namespace: str
) -> None:
    placement = {"spreadConstraints": [{"spreadBy": "region", "minGroups": 3}]}
    apply(
        client_for(testbed.host),
        federated_deployment(regions, "web", namespace, 3, placement=placement),
    )
    REQUESTS.clear()
    with pytest.raises(PlacementError, match="its members span only 2 \\(eu-west, us-east\\)"):
        rebalance(regions, namespace)
    assert {k: n for k, n in REQUESTS.items() if k[1] != "GET" and not is_host(k[0])} == {}
    assert running(testbed, namespace, "web") == {}


def test_a_no_execute_taint_drains_a_member_make_before_break(
    regions: str, testbed: TestbedSpec, namespace: str, fleetflow_home: Path
) -> None:
    joined = regions
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    apply(host, exposed(joined, namespace, "web", 6, testbed))
    tolerant = federated_deployment(
        joined,
        "cache",
        namespace,
        3,
        placement={"tolerations": [{"key": "maintenance", "operator": "Exists"}]},
    )
    apply(host, tolerant)
    rebalance(joined, namespace)
    assert running(testbed, namespace, "web") == {a: 2, b: 2, c: 2}

    dry = taint_member(
        TaintRequest(federation=joined, member=c, add=["maintenance=true:NoExecute"], dry_run=True)
    )
    assert [x.line() for x in dry.writes()] == [
        f"{testbed.host}: update MemberCluster taints {joined}-system/{c}"
    ]
    entry = get(host, API_VERSION, "MemberCluster", c, f"{joined}-system")
    assert "taints" not in entry["spec"]
    done = fleetflow(
        "taint",
        "--federation",
        joined,
        "--member",
        c,
        "--add",
        "maintenance=true:NoExecute",
        home=fleetflow_home,
    )
    assert done.returncode == 0, done.stderr
    entry = get(host, API_VERSION, "MemberCluster", c, f"{joined}-system")
    assert entry["spec"]["taints"] == [
        {"key": "maintenance", "value": "true", "effect": "NoExecute"}
    ]
    managers = {f["manager"] for f in entry["metadata"]["managedFields"]}
    assert "fleetflow-taint" in managers

    try:
        drained(joined, testbed, namespace, fleetflow_home)
    finally:
        lifted = taint_member(TaintRequest(federation=joined, member=c, remove=["maintenance"]))
    assert len(lifted.writes()) == 1
    entry = get(host, API_VERSION, "MemberCluster", c, f"{joined}-system")
    assert "taints" not in entry["spec"]


def drained(joined: str, testbed: TestbedSpec, namespace: str, fleetflow_home: Path) -> None:
    """Two runs at max_moves 1 empty the tainted member, Ready replicas and traffic held."""
    a, b, c = (m.name for m in testbed.members)
    sampler = Sampler(testbed, namespace, [a, b, c])
    traffic = Traffic(testbed, namespace, c)
    sampler.start()
    traffic.start()
    try:
        rebalance(joined, namespace, max_moves=1)
        step = running(testbed, namespace, "web")
        assert step[c] == 1 and step[a] + step[b] == 5, f"one replica a run: {step}"
        rebalance(joined, namespace, max_moves=1)
    finally:
        for thread in (sampler, traffic):
            thread.stop.set()
            thread.join()
    assert running(testbed, namespace, "web") == {a: 3, b: 3}
    assert running(testbed, namespace, "cache") == {a: 1, b: 1, c: 1}, "it tolerates the taint"
    assert sampler.samples and all(s.get("web", 0) >= 6 for s in sampler.samples), (
        "Ready replicas of web fell below 6 while it drained"
    )
    assert traffic.samples and not traffic.sent_to_nothing(), (
        f"DNS still sent web's traffic to {c} after its replicas were gone"
    )
    assert traffic.samples[-1][1] is False, "the drained member left the DNS answer"
    REQUESTS.clear()
    rebalance(joined, namespace, max_moves=1)
    writes = {k: n for k, n in REQUESTS.items() if k[1] != "GET" and not is_host(k[0])}
    assert writes == {}, "a drained member: the next run writes nothing"

    bad = fleetflow(
        "taint", "--federation", joined, "--member", c, "--add", "x", home=fleetflow_home
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert "expected KEY[=VALUE]:EFFECT" in bad.stderr
    nobody = fleetflow(
        "taint", "--federation", joined, "--member", "mars", "--remove", "x", home=fleetflow_home
    )
    assert nobody.returncode != 0 and "'mars' is not a member" in nobody.stderr, nobody.stderr


def test_a_stopped_region_falls_back_to_the_next_group_and_an_unmet_spread_is_reported(
    regions: str, testbed: TestbedSpec, namespace: str
) -> None:
    joined = regions
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    apply(host, federated_deployment(joined, "web", namespace, 4, placement=US_FIRST))
    apply(host, federated_deployment(joined, "api", namespace, 4, placement=TWO_REGIONS))
    rebalance(joined, namespace)
    assert running(testbed, namespace, "web") == {a: 2, b: 2}
    api = running(testbed, namespace, "api")
    assert sum(api.values()) == 4 and c in api and ({a, b} & set(api))
    try:
        for member in (a, b):
            bed.fault(member, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        rebalance(joined, namespace)  # one failed probe: Suspect, nothing moves
        assert running(testbed, namespace, "web") == {}
        with pytest.raises(PlacementError) as refused:
            rebalance(joined, namespace)  # Unhealthy: web falls back, api cannot spread
        assert (
            f"{namespace}/api: spread by region needs at least 2, at most 2, but only 1 can "
            "take replicas now (eu-west): the others have no healthy member with room"
        ) in str(refused.value)
        assert "web" not in str(refused.value)
        assert running(testbed, namespace, "web") == {c: 4}
        assert running(testbed, namespace, "api") == {c: api[c]}, "an unmet spread moves nothing"
        invalid = [x for x in conditions(testbed, namespace, "api") if x["status"] == "False"]
        assert any("spread by region" in x["message"] for x in invalid), invalid
    finally:
        for member in (a, b):
            bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda m: None)
    for _ in range(8):  # Recovering (api's spread still unmet), then Healthy: us again
        with contextlib.suppress(PlacementError):
            rebalance(joined, namespace, max_moves=2)
        if running(testbed, namespace, "web") == {a: 2, b: 2}:
            break
    assert running(testbed, namespace, "web") == {a: 2, b: 2}
    assert not [x for x in conditions(testbed, namespace, "api") if x["status"] == "False"]
