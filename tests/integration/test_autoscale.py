"""Federated autoscaling on the test bed: each member's own HPA (its kube-controller-manager's
HPA controller, on metrics-server, on kwok's emulated pod usage) scales within its share of one
budget, and rebalance runs move the budget. One federation for the module; each test in a
namespace of its own. The test that stops a cluster runs last."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from fleetflow.controlplane import API_VERSION
from fleetflow.errors import InvalidResource, PlacementError, ResourceNotFound
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import apply, get, list_objects
from fleetflow.models import RebalanceRequest, Report
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.metrics import USAGE_CPU_ANNOTATION
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.conftest import a_federation, client_for, fleetflow, made_whole

pytestmark = pytest.mark.integration

CPU_AT_HALF = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
    }
]


@pytest.fixture(scope="module")
def scaled(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    made_whole(testbed)  # the members' HPAs need their metrics API
    with a_federation(testbed, join=True, prefix="a") as name:
        yield name


def load(member: str, cpu: str = "200m") -> dict[str, Any]:
    """An override that makes every pod of the workload in ``member`` use ``cpu`` (of 100m
    requested): kwok reports it to metrics-server, the member's HPA acts on it."""
    annotations = {USAGE_CPU_ANNOTATION: cpu}
    return {
        "clusterName": member,
        "patch": {"spec": {"template": {"metadata": {"annotations": annotations}}}},
    }


def autoscaled(
    federation: str,
    namespace: str,
    *,
    low: int = 3,
    high: int = 12,
    overrides: list[dict[str, Any]] | None = None,
    placement: dict[str, Any] | None = None,
    name: str = "web",
    **extra: Any,
) -> dict[str, Any]:
    fd = federated_deployment(
        federation, name, namespace, 3, cpu="100m", overrides=overrides, placement=placement
    )
    fd["spec"]["autoscaling"] = {
        "minReplicas": low,
        "maxReplicas": high,
        "metrics": CPU_AT_HALF,
        **extra,
    }
    return fd


def hpa(member: str, namespace: str, name: str = "web") -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = get(
            client_for(member), "autoscaling/v2", "HorizontalPodAutoscaler", name, namespace
        )
    except ResourceNotFound:
        return None
    return found


def shares(testbed: TestbedSpec, namespace: str, members: list[str] | None = None) -> dict:
    """Each member's HPA (min, max), of those that have one."""
    found = {}
    for m in members or [m.name for m in testbed.members]:
        h = hpa(m, namespace)
        if h is not None:
            found[m] = (h["spec"]["minReplicas"], h["spec"]["maxReplicas"])
    return found


def replicas(testbed: TestbedSpec, namespace: str, members: list[str] | None = None) -> dict:
    found = {}
    for m in members or [m.name for m in testbed.members]:
        try:
            d = get(client_for(m), "apps/v1", "Deployment", "web", namespace)
        except ResourceNotFound:
            continue
        found[m] = d["spec"].get("replicas", 0)
    return found


def hpa_says(member: str, namespace: str) -> str:
    """The HPA's own account of itself, for a wait that failed: its metrics and conditions."""
    status = (hpa(member, namespace) or {}).get("status") or {}
    conditions = status.get("conditions") or []
    said = [f"{c['type']}={c['status']} ({c.get('message', '')})" for c in conditions]
    return f"metrics {status.get('currentMetrics')}; " + "; ".join(said)


def limited(member: str, namespace: str) -> bool:
    """The member's HPA is at its max and its metrics ask for more."""
    status = (hpa(member, namespace) or {}).get("status") or {}
    return any(
        c["type"] == "ScalingLimited" and c["status"] == "True" and c["reason"] == "TooManyReplicas"
        for c in status.get("conditions") or []
    ) and status.get("currentReplicas") == status.get("desiredReplicas")


def rebalance(federation: str, namespace: str) -> Report:
    return rebalance_replicas(RebalanceRequest(federation=federation, namespace=namespace))


def test_load_in_one_region_moves_budget_there_and_back(
    scaled: str, testbed: TestbedSpec, namespace: str, fleetflow_home: Any
) -> None:
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    # The members' HPAs scale down as soon as the load is gone: the behavior is theirs.
    quick = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    apply(host, autoscaled(scaled, namespace, maxBudgetMove=4, behavior=quick, overrides=[load(c)]))
    rebalance(scaled, namespace)
    assert shares(testbed, namespace) == {a: (1, 4), b: (1, 4), c: (1, 4)}
    assert replicas(testbed, namespace) == {a: 1, b: 1, c: 1}  # 3 replicas to start from
    assert hpa(c, namespace)["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 0

    def total_within_max() -> dict[str, int]:
        seen = replicas(testbed, namespace)
        assert 3 <= sum(seen.values()) <= 12, seen
        return seen

    # The load is in c only: its own HPA scales it to its max, and wants more.
    poll_until(
        lambda: (total_within_max(), limited(c, namespace)),
        lambda seen: seen[1] and seen[0][c] == 4,
        timeout=120,
        waiting_for=f"{c}'s HPA at its max 4 and limited",
        describe=lambda seen: f"replicas {seen[0]}; {c}'s HPA: {hpa_says(c, namespace)}",
    )
    report = rebalance(scaled, namespace)
    assert shares(testbed, namespace) == {a: (1, 2), b: (1, 2), c: (1, 8)}
    moved = get(host, API_VERSION, "FederatedDeployment", "web", namespace)["status"]
    assert moved["lastBudgetMove"]["target"] == c
    assert "at max 4 wants" in moved["lastBudgetMove"]["reason"]
    assert {(x.cluster, x.kind) for x in report.actions} >= {
        (a, "HorizontalPodAutoscaler"),
        (b, "HorizontalPodAutoscaler"),
        (c, "HorizontalPodAutoscaler"),
    }
    # c's HPA scales up into its new max; the federation's total never passes 12.
    poll_until(
        total_within_max,
        lambda seen: seen[c] == 8,
        timeout=60,
        waiting_for=f"{c}'s HPA scaling to its new max 8",
    )
    poll_until(lambda: limited(c, namespace), bool, timeout=30, waiting_for=f"{c} limited at 8")
    rebalance(scaled, namespace)  # records what the HPAs now want
    quiet = rebalance(scaled, namespace)
    assert quiet.actions == []
    assert "0 status updates in the host" in quiet.notes
    assert replicas(testbed, namespace)[c] == 8  # the HPA's count, not reset by the runs
    shown = fleetflow("autoscale", "status", "--federation", scaled, home=fleetflow_home)
    assert shown.returncode == 0, shown.stderr
    table = shown.stdout.splitlines()
    assert table[0].split()[:4] == ["WORKLOAD", "MEMBER", "MIN", "MAX"]
    row = next(line.split() for line in table if line.startswith(f"{namespace}/web  {c}"))
    assert row[2:6] == ["1", "8", "8", "8"]
    whole = next(line for line in table if line.startswith(f"{namespace}/web  -"))
    assert re.search(rf"{b} -> {c}: 2 of max \({c} at max 4 wants \d+; {b} uses 1 of 4\)", whole)

    # The load goes: c's HPA scales down, and the budget returns to the fair shares.
    apply(host, autoscaled(scaled, namespace, maxBudgetMove=4, behavior=quick))
    rebalance(scaled, namespace)  # c's pods lose the annotation
    poll_until(
        lambda: (total_within_max(), (hpa(c, namespace) or {}).get("status") or {}),
        lambda seen: max(seen[1].get("desiredReplicas", 8), seen[1].get("currentReplicas", 8)) <= 2,
        timeout=120,
        waiting_for=f"{c}'s HPA scaling down once its load is gone",
    )
    rebalance(scaled, namespace)
    assert shares(testbed, namespace) == {a: (1, 4), b: (1, 4), c: (1, 4)}


def test_turning_autoscaling_off_returns_the_workload_to_its_replicas(
    scaled: str, testbed: TestbedSpec, namespace: str
) -> None:
    host = client_for(testbed.host)
    apply(host, autoscaled(scaled, namespace, low=2, high=6))
    rebalance(scaled, namespace)
    assert len(shares(testbed, namespace)) == 3
    # Applied again without autoscaling by the same field manager: the field is gone.
    apply(host, federated_deployment(scaled, "web", namespace, 6, cpu="100m"))
    report = rebalance(scaled, namespace)
    assert shares(testbed, namespace) == {}
    assert (
        sorted(x.verb.value for x in report.actions if x.kind == "HorizontalPodAutoscaler")
        == ["delete"] * 3
    )
    assert replicas(testbed, namespace) == {m.name: 2 for m in testbed.members}
    assert rebalance(scaled, namespace).actions == []
    assert replicas(testbed, namespace) == {m.name: 2 for m in testbed.members}


def test_bad_autoscaling_is_one_clear_line_and_changes_nothing(
    scaled: str, testbed: TestbedSpec, namespace: str, fleetflow_home: Any
) -> None:
    host = client_for(testbed.host)
    with pytest.raises(InvalidResource, match="minReplicas must not be above maxReplicas"):
        apply(host, autoscaled(scaled, namespace, low=5, high=3))
    everyone = {m.name: 1 for m in testbed.members}
    musts = autoscaled(scaled, namespace, low=1, high=2, placement={"min": everyone}, name="musts")
    apply(host, musts)
    with pytest.raises(PlacementError, match="maxReplicas 2 is below the 3 members that must run"):
        rebalance(scaled, namespace)
    assert all(hpa(m.name, namespace, "musts") is None for m in testbed.members)
    assert not any(
        list_objects(client_for(m.name), "apps/v1", "Deployment", namespace)
        for m in testbed.members
    )

    refused = [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}},
        }
    ]
    apply(host, autoscaled(scaled, namespace, metrics=refused))
    with pytest.raises(PlacementError) as caught:
        rebalance(scaled, namespace)
    (line,) = [x for x in str(caught.value).split("; ") if "HPA API" in x] or [""]
    assert "web: " in line and "HPA API refuses the autoscaling" in line
    assert "averageUtilization" in str(caught.value)
    assert "\n" not in line
    assert replicas(testbed, namespace) == {} and shares(testbed, namespace) == {}
    status = get(host, API_VERSION, "FederatedDeployment", "web", namespace)["status"]
    assert status["conditions"][0]["reason"] == "Invalid"

    unknown = fleetflow("autoscale", "status", "--federation", "nope", home=fleetflow_home)
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1 and "nope" in unknown.stderr


def test_a_failed_member_hands_its_share_to_the_survivors(
    scaled: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, c = (m.name for m in testbed.members)
    apply(client_for(testbed.host), autoscaled(scaled, namespace, low=3, high=9))
    rebalance(scaled, namespace)
    assert shares(testbed, namespace) == {a: (1, 3), b: (1, 3), c: (1, 3)}
    try:
        bed.fault(b, bed.Fault.STOP_CLUSTER, progress=lambda m: None)
        rebalance(scaled, namespace)  # one failed probe: Suspect, nothing moves
        assert shares(testbed, namespace, [a, c]) == {a: (1, 3), c: (1, 3)}
        rebalance(scaled, namespace)  # Unhealthy: its budget goes to the survivors
        survivors = shares(testbed, namespace, [a, c])
        assert sum(high for _, high in survivors.values()) == 9
        assert sum(low for low, _ in survivors.values()) >= 3
        status = get(client_for(testbed.host), API_VERSION, "FederatedDeployment", "web", namespace)
        assert f"{b} no longer placeable (held 3)" in status["status"]["lastBudgetMove"]["reason"]
        # The survivors' HPAs raise them to their new mins at their next sync.
        total = poll_until(
            lambda: sum(replicas(testbed, namespace, [a, c]).values()),
            lambda n: n >= 3,
            timeout=30,
            waiting_for="the survivors at the federation's min",
        )
        assert total <= 9
    finally:
        bed.fault(b, bed.Fault.START_CLUSTER, progress=lambda m: None)
