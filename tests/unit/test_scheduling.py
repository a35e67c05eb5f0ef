"""Custom scheduling: affinity groups, spread constraints, taints and tolerations. Pure.

Properties first (spread never violated when it can be met, a lower group never moves replicas
off a first group that holds them, monotone in the total within a group), then worked examples
through ``plan_workload`` as a rebalance and a failover run it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleetflow.controlplane import REGION_LABEL
from fleetflow.errors import PlacementError
from fleetflow.failover import plan_failover
from fleetflow.federated import FederatedDeployment, Placement
from fleetflow.health import Health, HealthState
from fleetflow.models import TaintRequest
from fleetflow.placement import Candidate
from fleetflow.rebalance import MemberView, Observed, plan_workload
from fleetflow.scheduling import (
    AffinityGroup,
    ClusterSelector,
    Requirement,
    Rules,
    SpreadConstraint,
    Taint,
    Toleration,
    schedule,
    taints_after,
)

SOME = settings(max_examples=150, deadline=None)
NAMES = [f"m{i}" for i in range(7)]
REGIONS = ["us", "eu", "ap"]


@dataclass
class Facts:
    labels: dict[str, str]
    taints: list[Taint] = field(default_factory=list)


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Candidate], dict[str, Facts]]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=7, unique=True))
    candidates, facts = [], {}
    for name in sorted(names):
        candidates.append(
            Candidate(
                name=name,
                weight=draw(st.integers(0, 5)),
                max=draw(st.one_of(st.none(), st.integers(0, 8))),
                capacity=draw(st.one_of(st.none(), st.integers(0, 8))),
                healthy=draw(st.booleans().map(lambda b: b or draw(st.booleans()))),
                fenced=draw(st.integers(0, 9)) == 0,
                current=draw(st.integers(0, 4)),
            )
        )
        facts[name] = Facts({REGION_LABEL: draw(st.sampled_from(REGIONS))})
    if not any(c.weight for c in candidates):
        candidates[0] = candidates[0]._replace(weight=1)
    return candidates, facts


def usable(c: Candidate) -> bool:
    caps = [v for v in (c.max, c.capacity) if v is not None]
    return c.healthy and not c.fenced and c.weight > 0 and (not caps or min(caps) > 0)


def regions_used(replicas: dict[str, int], facts: dict[str, Facts]) -> set[str]:
    return {facts[n].labels[REGION_LABEL] for n, k in replicas.items() if k}


@SOME
@given(fleets(), st.integers(1, 30), st.integers(1, 3), st.one_of(st.none(), st.integers(1, 3)))
def test_spread_is_never_violated_and_refused_only_when_it_cannot_be_met(
    fleet: tuple[list[Candidate], dict[str, Facts]], total: int, low: int, high: int | None
) -> None:
    candidates, facts = fleet
    high = None if high is None else max(high, low)
    rule = SpreadConstraint(spreadBy="region", minGroups=low, maxGroups=high)
    open_regions = {facts[c.name].labels[REGION_LABEL] for c in candidates if usable(c)}
    try:
        found = schedule(total, candidates, facts, Rules(spread=[rule]), workload="shop/web")
    except PlacementError as exc:
        assert len(open_regions) < low or total < low, exc
        return
    used = regions_used(found.plan.replicas, facts)
    assert low <= len(used) <= (high or len(REGIONS))
    assert sum(found.plan.replicas.values()) + found.plan.unplaced == total


@SOME
@given(fleets(), st.integers(0, 30), st.sampled_from(REGIONS), st.sampled_from(REGIONS))
def test_a_lower_group_never_moves_replicas_off_a_first_group_that_holds_them(
    fleet: tuple[list[Candidate], dict[str, Facts]], total: int, first: str, second: str
) -> None:
    candidates, facts = fleet

    def group(region: str) -> AffinityGroup:
        term = Requirement(key=REGION_LABEL, operator="In", values=[region])
        selector = ClusterSelector(matchExpressions=[term])
        return AffinityGroup(name=region, clusterSelector=selector)

    try:
        alone = schedule(total, candidates, facts, Rules(groups=[group(first)]), workload="w/x")
    except PlacementError:
        return
    if alone.plan.unplaced:
        return
    both = schedule(
        total, candidates, facts, Rules(groups=[group(first), group(second)]), workload="w/x"
    )
    assert both.plan.replicas == alone.plan.replicas
    assert both.group == first


@SOME
@given(fleets(), st.integers(0, 25), st.integers(0, 10), st.integers(1, 2))
def test_monotone_in_the_total_while_the_group_and_spread_hold(
    fleet: tuple[list[Candidate], dict[str, Facts]], total: int, more: int, low: int
) -> None:
    candidates, facts = fleet
    candidates = [c._replace(current=0) for c in candidates]
    rules = Rules(
        groups=[
            AffinityGroup(
                name="eu", clusterSelector=ClusterSelector(matchLabels={REGION_LABEL: "eu"})
            ),
            AffinityGroup(name="all"),
        ],
        spread=[SpreadConstraint(spreadBy="cluster", minGroups=low)],
    )
    try:
        small = schedule(total, candidates, facts, rules, workload="w/x")
        big = schedule(total + more, candidates, facts, rules, workload="w/x")
    except PlacementError:
        return
    if small.group != big.group or small.plan.unplaced or big.plan.unplaced:
        return
    assert all(big.plan.replicas[n] >= k for n, k in small.plan.replicas.items())


@SOME
@given(fleets(), st.integers(0, 30), st.sampled_from(["NoSchedule", "NoExecute"]), st.booleans())
def test_a_taint_keeps_replicas_off_unless_tolerated(
    fleet: tuple[list[Candidate], dict[str, Facts]], total: int, effect: str, tolerated: bool
) -> None:
    candidates, facts = fleet
    tainted = candidates[0].name
    facts[tainted].taints = [Taint(key="dedicated", value="gpu", effect=effect)]  # type: ignore[arg-type]
    tolerations = [Toleration(key="dedicated", value="gpu")] if tolerated else []
    try:
        found = schedule(total, candidates, facts, Rules(tolerations=tolerations), workload="w/x")
    except PlacementError:
        return
    got = found.plan.replicas[tainted]
    if tolerated:
        untainted = facts | {tainted: Facts({})}
        plain = schedule(total, candidates, untainted, Rules(), workload="w/x")
        assert found.plan.replicas == plain.plan.replicas
    elif effect == "NoExecute":
        assert got == 0
        if candidates[0].healthy and not candidates[0].fenced:
            assert "not tolerated: replicas move away" in found.plan.reasons[tainted]
    else:
        assert got <= candidates[0].current


# --- rules and their errors ------------------------------------------------------------------


def test_selector_terms() -> None:
    labels = {"region": "us", "gpu": "yes"}
    assert Requirement(key="region", operator="In", values=["us", "eu"]).matches(labels)
    assert not Requirement(key="region", operator="NotIn", values=["us"]).matches(labels)
    assert Requirement(key="gpu", operator="Exists").matches(labels)
    assert Requirement(key="ssd", operator="DoesNotExist").matches(labels)
    selector = ClusterSelector(
        matchLabels={"gpu": "yes"},
        matchExpressions=[Requirement(key="region", operator="NotIn", values=["us"])],
    )
    assert selector.miss(labels) == "region NotIn [us]"
    assert selector.miss({"gpu": "yes", "region": "eu"}) is None


@pytest.mark.parametrize(
    ("model", "data", "message"),
    [
        (Requirement, {"key": "r", "operator": "Near", "values": ["x"]}, "'In', 'NotIn'"),
        (Requirement, {"key": "r", "operator": "In"}, "needs values"),
        (Requirement, {"key": "r", "operator": "Exists", "values": ["x"]}, "takes no values"),
        (Toleration, {"operator": "Exists"}, "key"),
        (Toleration, {"key": "fleetflow.io/fenced", "operator": "Exists"}, "cannot be tolerated"),
        (Toleration, {"key": "k", "operator": "Exists", "value": "v"}, "takes no value"),
        (SpreadConstraint, {"spreadBy": "region", "minGroups": 3, "maxGroups": 2}, "above"),
    ],
)
def test_bad_rules_are_refused_with_what_is_wrong(
    model: type[Requirement | Toleration | SpreadConstraint], data: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        model.model_validate(data)


def test_taints_parse_and_change_like_kubectl() -> None:
    taint = Taint.parse("dedicated=gpu:NoSchedule")
    assert (taint.key, taint.value, taint.effect) == ("dedicated", "gpu", "NoSchedule")
    assert Taint.parse("maintenance:NoExecute").text() == "maintenance:NoExecute"
    for bad in ("dedicated=gpu", "x:Sometimes", ":NoSchedule"):
        with pytest.raises(PlacementError, match="KEY\\[=VALUE\\]:EFFECT"):
            Taint.parse(bad)
    now = [Taint.parse("a=1:NoSchedule"), Taint.parse("a:NoExecute"), Taint.parse("b:NoSchedule")]
    after = taints_after(now, [Taint.parse("a=2:NoSchedule")], ["b"])
    assert [t.text() for t in after] == ["a:NoExecute", "a=2:NoSchedule"]
    assert taints_after(after, [], ["a:NoExecute", "zzz"]) == [Taint.parse("a=2:NoSchedule")]


def test_taint_requests_are_checked_before_any_run() -> None:
    with pytest.raises(ValidationError, match="KEY\\[=VALUE\\]:EFFECT"):
        TaintRequest(federation="demo", member="us-east-1", add=["oops"])
    with pytest.raises(ValidationError, match="fleetflow's own"):
        TaintRequest(federation="demo", member="us-east-1", add=["fleetflow.io/fenced:NoExecute"])
    with pytest.raises(ValidationError, match="--add or one to --remove"):
        TaintRequest(federation="demo", member="us-east-1")


def test_placement_reads_the_rules_from_the_spec() -> None:
    placement = Placement.model_validate(
        {
            "affinityGroups": [
                {
                    "name": "us",
                    "clusterSelector": {
                        "matchExpressions": [{"key": "region", "operator": "In", "values": ["us"]}]
                    },
                },
                {"name": "anywhere"},
            ],
            "spreadConstraints": [{"spreadBy": "region", "minGroups": 2}],
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        }
    )
    rules = placement.rules()
    assert [g.name for g in rules.groups] == ["us", "anywhere"]
    assert rules.spread[0].min_groups == 2 and rules.spread[0].max_groups is None
    assert rules.tolerations[0].tolerates(Taint.parse("dedicated=x:NoSchedule"))
    assert not rules.tolerations[0].tolerates(Taint.parse("dedicated=x:NoExecute"))


# --- through plan_workload, as rebalance and failover run it ---------------------------------


def fd(replicas: int = 6, **placement: object) -> FederatedDeployment:
    return FederatedDeployment.from_object(
        {
            "metadata": {"name": "web", "namespace": "shop", "generation": 1},
            "spec": {
                "replicas": replicas,
                "template": {"spec": {"template": {"spec": {"containers": [{"name": "w"}]}}}},
                "placement": placement,
            },
        }
    )


def fleet(**running: int) -> dict[str, MemberView]:
    regions = {"us-east-1": "us-east", "us-east-2": "us-east", "eu-west-1": "eu-west"}
    views = {
        name: MemberView(name=name, labels={REGION_LABEL: region})
        for name, region in regions.items()
    }
    for name, n in running.items():
        views[name].deployments["shop/web"] = Observed(replicas=n, ready=n)
    return views


US_FIRST = {
    "affinityGroups": [
        {
            "name": "us",
            "clusterSelector": {
                "matchExpressions": [{"key": REGION_LABEL, "operator": "In", "values": ["us-east"]}]
            },
        },
        {"name": "eu", "clusters": ["eu-west-1"]},
    ]
}


def test_a_region_down_falls_back_to_the_next_group_and_comes_back() -> None:
    views = fleet(**{"us-east-1": 3, "us-east-2": 3})
    assert plan_workload(fd(**US_FIRST), views).replicas == {
        "us-east-1": 3,
        "us-east-2": 3,
        "eu-west-1": 0,
    }
    for name in ("us-east-1", "us-east-2"):
        views[name] = views[name].model_copy(
            update={"health": HealthState(health=Health.UNHEALTHY)}
        )
    down = plan_workload(fd(**US_FIRST), views, max_moves=2)
    assert down.replicas == {"us-east-1": 0, "us-east-2": 0, "eu-west-1": 6}
    assert down.notes[0] == (
        "group us (#1): no member can take replicas now (us-east-1 unhealthy, us-east-2 unhealthy)"
    )
    assert down.reasons["eu-west-1"].endswith("group eu")
    back = fleet(**{"eu-west-1": 6})
    step = plan_workload(fd(**US_FIRST), back, max_moves=2)
    assert step.replicas["eu-west-1"] == 4, "the return is rate-limited: healthy members"
    assert "not in use while us has room" in step.reasons["eu-west-1"]


def test_failover_honours_the_group_order() -> None:
    views = fleet(**{"us-east-1": 3, "us-east-2": 3})
    failover = plan_failover([fd(**US_FIRST)], views, ["us-east-1", "us-east-2"])
    assert failover.plans["shop/web"].replicas["eu-west-1"] == 6


def test_an_unmet_spread_is_an_error_and_plans_nothing() -> None:
    views = fleet(**{"us-east-1": 3, "us-east-2": 3})
    spread = {"spreadConstraints": [{"spreadBy": "region", "minGroups": 3}]}
    plan = plan_workload(fd(**spread), views)
    assert plan.error is not None and plan.replicas == {}
    assert "needs at least 3, but its members span only 2 (eu-west, us-east)" in plan.error
    views["eu-west-1"] = views["eu-west-1"].model_copy(update={"fenced": True})
    plan = plan_workload(fd(spreadConstraints=[{"spreadBy": "region", "minGroups": 2}]), views)
    assert plan.error is not None and "only 1 can take replicas now (us-east)" in plan.error
    views["eu-west-1"] = views["eu-west-1"].model_copy(update={"fenced": False})
    met = plan_workload(
        fd(**{"spreadConstraints": [{"spreadBy": "region", "minGroups": 2}]}), views
    )
    assert met.replicas["eu-west-1"] >= 1 and met.error is None
    assert met.notes == [
        "spread by region (at least 2): us-east (2 members with room), eu-west (1)"
    ]


def test_max_groups_keeps_the_regions_already_running_it() -> None:
    views = fleet(**{"eu-west-1": 6})
    plan = plan_workload(
        fd(**{"spreadConstraints": [{"spreadBy": "region", "maxGroups": 1}]}), views
    )
    assert plan.replicas == {"us-east-1": 0, "us-east-2": 0, "eu-west-1": 6}
    assert plan.reasons["us-east-1"] == "spread by region: us-east not among the 1 chosen"


def test_a_no_execute_taint_drains_at_max_moves_and_a_toleration_keeps_it() -> None:
    views = fleet(**{"us-east-1": 2, "us-east-2": 2, "eu-west-1": 2})
    views["eu-west-1"] = views["eu-west-1"].model_copy(
        update={"taints": [Taint.parse("maintenance=true:NoExecute")]}
    )
    plan = plan_workload(fd(), views, max_moves=1)
    assert plan.replicas["eu-west-1"] == 1 and sum(plan.replicas.values()) == 6
    assert "maintenance=true:NoExecute not tolerated" in plan.reasons["eu-west-1"]
    kept = plan_workload(fd(tolerations=[{"key": "maintenance", "operator": "Exists"}]), views)
    assert kept.replicas["eu-west-1"] == 2


def test_a_no_schedule_taint_keeps_what_runs_and_adds_nothing() -> None:
    views = fleet(**{"us-east-1": 1, "us-east-2": 1, "eu-west-1": 1})
    views["eu-west-1"] = views["eu-west-1"].model_copy(
        update={"taints": [Taint.parse("dedicated=gpu:NoSchedule")]}
    )
    plan = plan_workload(fd(replicas=9), views)
    assert plan.replicas == {"us-east-1": 4, "us-east-2": 4, "eu-west-1": 1}
    assert "no new replicas" in plan.reasons["eu-west-1"]


def test_every_member_tainted_is_an_error_not_an_empty_plan() -> None:
    views = fleet(**{"us-east-1": 3, "us-east-2": 3})
    for name, view in views.items():
        views[name] = view.model_copy(update={"taints": [Taint.parse("x:NoExecute")]})
    plan = plan_workload(fd(), views)
    assert plan.error == (
        "shop/web: no member can take replicas now (eu-west-1 taint x:NoExecute not tolerated: "
        "replicas move away, us-east-1 taint x:NoExecute not tolerated: replicas move away, "
        "us-east-2 taint x:NoExecute not tolerated: replicas move away)"
    )
    assert plan.replicas == {}
