"""Rebalance planning without clusters: selection, failback limit, member Deployments."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.autoscaling import Autoscaler, Share
from fleetflow.capacity import Resources
from fleetflow.errors import PlacementError
from fleetflow.federated import (
    ANNOTATION_HASH,
    ClusterPlacement,
    FederatedDeployment,
    member_deployment,
)
from fleetflow.health import Health, HealthState
from fleetflow.patches import merge_patch
from fleetflow.rebalance import MemberView, Observed, limit_moves, plan_workload, select


def fd(replicas: int = 6, **placement: Any) -> FederatedDeployment:
    return FederatedDeployment.from_object(
        {
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "web",
                                        "image": "nginx:1",
                                        "resources": {"requests": {"cpu": "500m"}},
                                    }
                                ]
                            }
                        },
                    },
                },
                "placement": placement,
                "overrides": [
                    {"clusterName": "eu", "image": "nginx:eu"},
                    {"clusterName": "us", "patch": {"spec": {"paused": True}}},
                ],
            },
        }
    )


def members(**health: Health) -> dict[str, MemberView]:
    labels = {"us": {"region": "us"}, "us2": {"region": "us"}, "eu": {"region": "eu"}}
    return {
        n: MemberView(name=n, labels=tags, health=HealthState(health=health.get(n, Health.HEALTHY)))
        for n, tags in labels.items()
    }


def test_selection_by_names_labels_and_errors() -> None:
    assert select(fd(), members()) == ["eu", "us", "us2"]
    assert select(fd(clusters=["us", "eu"]), members()) == ["eu", "us"]
    assert select(fd(clusterSelector={"matchLabels": {"region": "us"}}), members()) == ["us", "us2"]
    with pytest.raises(PlacementError, match="unknown cluster\\(s\\) mars"):
        select(fd(clusters=["mars"]), members())
    with pytest.raises(PlacementError, match="selects no member cluster"):
        select(fd(clusterSelector={"matchLabels": {"region": "mars"}}), members())
    with pytest.raises(PlacementError, match="weights name unknown"):
        select(fd(weights={"pluto": 1}), members())


def test_unhealthy_member_is_evacuated_at_once_whatever_max_moves() -> None:
    view = members(us2=Health.UNHEALTHY)
    for name, n in {"us": 2, "us2": 2, "eu": 2}.items():
        view[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    plan = plan_workload(fd(), view, max_moves=1)
    assert plan.replicas == {"eu": 3, "us": 3, "us2": 0}
    assert plan.reasons["us2"].startswith("unhealthy")


def test_failback_moves_at_most_max_moves() -> None:
    view = members()
    for name, n in {"us": 3, "us2": 0, "eu": 3}.items():
        view[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    plan = plan_workload(fd(), view, max_moves=1)
    assert plan.replicas["us2"] == 1 and sum(plan.replicas.values()) == 6
    assert "max_moves" in " ".join(plan.reasons.values())


@given(
    st.dictionaries(st.sampled_from("abcde"), st.integers(0, 20), min_size=1),
    st.dictionaries(st.sampled_from("abcde"), st.integers(0, 20), min_size=1),
    st.integers(1, 5),
)
def test_limit_moves_keeps_the_total_and_the_budget(
    current: dict[str, int], desired: dict[str, int], budget: int
) -> None:
    placeable = set(desired)
    step = limit_moves(current, desired, placeable, budget)
    assert sum(step.values()) == sum(desired.values())
    assert set(step) == set(desired)
    base = {c: current.get(c, 0) for c in desired}
    owed = sum(desired.values()) - sum(base.values())
    moved_in = sum(max(0, step[c] - base[c]) for c in desired)
    assert moved_in <= max(0, owed) + budget
    # Every cluster moves towards its target, never past it.
    for c in desired:
        lo, hi = sorted((base[c], desired[c]))
        assert lo <= step[c] <= hi


def test_member_deployment_applies_overrides_labels_and_a_stable_hash() -> None:
    workload = fd()
    eu = member_deployment(workload, "eu", 2, "prod")
    us = member_deployment(workload, "us", 2, "prod")
    assert eu["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:eu"
    assert us["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1"
    assert us["spec"]["paused"] is True and "paused" not in eu["spec"]
    assert eu["spec"]["replicas"] == 2
    assert eu["metadata"]["labels"]["fleetflow.io/federation"] == "prod"
    assert member_deployment(workload, "eu", 2, "prod") == eu
    assert (
        member_deployment(workload, "eu", 3, "prod")["metadata"]["annotations"][ANNOTATION_HASH]
        != eu["metadata"]["annotations"][ANNOTATION_HASH]
    )
    assert workload.per_replica().cpu == 500


def test_merge_patch_follows_rfc_7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }


def last_seen(workload: FederatedDeployment, desired: dict[str, int]) -> FederatedDeployment:
    """The workload as a run recorded it: each member's desired count."""
    clusters = [ClusterPlacement(name=m, desired=n) for m, n in sorted(desired.items())]
    status = workload.status.model_copy(update={"clusters": clusters})
    return workload.model_copy(update={"status": status})


def test_a_member_that_does_not_answer_gains_no_replicas_so_the_others_keep_theirs() -> None:
    # Seen on make up: a region recovered, went down again within the Suspect window, and the
    # rebalance the recovery started gave it its share back: the survivors were scaled down at
    # once while the replicas meant for it were never started.
    view = members(eu=Health.SUSPECT)
    view["eu"].reachable = False
    for name, n in {"us": 3, "us2": 3}.items():
        view[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    plan = plan_workload(fd(), view)
    assert plan.replicas == {"eu": 0, "us": 3, "us2": 3}
    assert plan.reasons["eu"].startswith("not answering: keeps the 0 it ran when last seen")
    # What it ran when last seen it keeps (Suspect): its health decides when those move.
    view["us"].deployments["shop/web"] = Observed(replicas=2, ready=2)
    view["us2"].deployments["shop/web"] = Observed(replicas=2, ready=2)
    assert plan_workload(last_seen(fd(), {"eu": 2}), view).replicas == {"eu": 2, "us": 2, "us2": 2}


@given(
    st.dictionaries(st.sampled_from(["us", "us2", "eu"]), st.integers(0, 6)),
    st.dictionaries(st.sampled_from(["us", "us2", "eu"]), st.sampled_from(list(Health))),
    st.sets(st.sampled_from(["us", "us2", "eu"])),
    st.integers(1, 12),
)
def test_a_member_that_does_not_answer_never_gains_replicas(
    running: dict[str, int], health: dict[str, Health], silent: set[str], total: int
) -> None:
    view = members(**health)
    workload = last_seen(fd(total), {m: n for m, n in running.items() if m in silent})
    for name, n in running.items():
        if name in silent:
            view[name].reachable = False
        else:
            view[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    for name in silent:
        view[name].reachable = False
    plan = plan_workload(workload, view)
    for name in silent:
        assert plan.replicas.get(name, 0) <= running.get(name, 0)


def test_replicas_nobody_can_take_stay_where_they_run_until_someone_can() -> None:
    # Seen on make up: a rotated token made every member look unhealthy to the watcher, and a
    # rebalance scaled every member to 0 (an autoscaled workload deleted), starting nothing.
    view = members(us=Health.UNHEALTHY, us2=Health.UNHEALTHY, eu=Health.UNHEALTHY)
    for name, n in {"us": 4, "us2": 2}.items():
        view[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    plan = plan_workload(fd(), view)
    assert plan.replicas == {"eu": 0, "us": 4, "us2": 2} and plan.unplaced == 0
    assert (
        plan.reasons["us"]
        == "unhealthy: keeps 4 no other member can take now (they move once one can)"
    )
    # Room for part of them elsewhere: only that part moves.
    view["eu"].health = HealthState(health=Health.HEALTHY)
    view["eu"].free = Resources(cpu=1000, memory=1 << 30, pods=10)  # two of 500m
    plan = plan_workload(fd(mode="Capacity"), view)
    assert plan.replicas["eu"] == 2 and plan.replicas["us"] + plan.replicas["us2"] == 4
    assert sum(plan.replicas.values()) == 6 and plan.unplaced == 0
    # A fence is an order to evacuate: a fenced member keeps nothing.
    view["us"].fenced = view["us2"].fenced = True
    plan = plan_workload(fd(mode="Capacity"), view)
    assert plan.replicas == {"eu": 2, "us": 0, "us2": 0} and plan.unplaced == 4


@given(
    st.dictionaries(st.sampled_from(["us", "us2", "eu"]), st.integers(0, 6)),
    st.dictionaries(st.sampled_from(["us", "us2", "eu"]), st.sampled_from(list(Health))),
    st.fixed_dictionaries({m: st.integers(0, 4) for m in ("us", "us2", "eu")}),
    st.integers(1, 12),
    st.sampled_from(["Capacity", "Weighted"]),
    st.none() | st.integers(1, 3),
)
def test_a_plan_never_stops_more_replicas_than_it_starts(
    running: dict[str, int],
    health: dict[str, Health],
    room: dict[str, int],
    total: int,
    mode: str,
    max_moves: int | None,
) -> None:
    """Whatever the members' health and room, the plan runs as many replicas as ran (or as
    the total asks, when fewer): what it takes from a member, another gets."""
    view = members(**health)
    for name, n in running.items():
        view[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    for name, n in room.items():
        view[name].free = Resources(cpu=500 * n, memory=1 << 30, pods=n)
    plan = plan_workload(fd(total, mode=mode), view, max_moves=max_moves)
    assert plan.error is None
    assert sum(plan.replicas.values()) >= min(sum(running.values()), total), plan
    assert sum(plan.replicas.values()) + plan.unplaced == total, plan


def test_an_autoscaled_workload_nobody_can_take_keeps_its_hpa_where_it_runs() -> None:
    body = fd().model_dump(by_alias=True)
    spec = {**body["spec"], "autoscaling": {"minReplicas": 2, "maxReplicas": 9}}
    workload = FederatedDeployment.from_object(
        {"metadata": {"name": "web", "namespace": "shop", "generation": 4}, "spec": spec}
    )
    view = members(us=Health.UNHEALTHY, us2=Health.UNHEALTHY, eu=Health.UNHEALTHY)
    view["us"].deployments["shop/web"] = Observed(replicas=3, ready=3)
    view["us"].autoscalers["shop/web"] = Autoscaler(min=1, max=4, current=3, desired=3, wanted=3)
    plan = plan_workload(workload, view)
    assert plan.remove_from == [] and plan.replicas == {"us": 3}, plan
    assert plan.budget is not None and plan.budget.shares["us"] == Share(1, 4, 3)
    assert plan.unplaced == 5
    assert plan.reasons["us"].startswith("unhealthy: keeps 3 no other member can take now")
