"""Spread constraints chosen together, against the cases of the schedulers users compare us with.

Table tests port Karmada's own cases (``pkg/scheduler/core/spreadconstraint``) and Kubernetes'
``ToleratesTaint`` cases, each naming its source; where fleetflow answers differently on
purpose, the case says why and asserts fleetflow's documented answer. Properties then check,
against a brute-force search over every choice of members, that a satisfiable spread is never
refused, an unsatisfiable one never silently returned, and the order of the constraints never
changes a result.
"""

from __future__ import annotations

import re
from itertools import combinations, permutations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL, federated_deployment_crd
from fleetflow.errors import PlacementError
from fleetflow.federated import FederatedDeployment
from fleetflow.health import Health, HealthState
from fleetflow.placement import Candidate
from fleetflow.rebalance import MemberView, Observed, plan_workload
from fleetflow.scheduling import (
    AffinityGroup,
    Facts,
    Rules,
    Scheduled,
    SpreadConstraint,
    Taint,
    Toleration,
    schedule,
)
from fleetflow.spread import unmet

Member = tuple[str, str, int, int | None, int]
"""name, region, weight (Karmada's score), room (Karmada's AvailableReplicas), current."""


def run(total: int, fleet: list[Member], *spread: dict[str, object]) -> Scheduled:
    candidates = [
        Candidate(name=n, weight=w, capacity=room, current=cur) for n, _, w, room, cur in fleet
    ]
    facts = {n: Facts({REGION_LABEL: region}) for n, region, *_ in fleet}
    rules = Rules(spread=[SpreadConstraint.model_validate(s) for s in spread])
    return schedule(total, candidates, facts, rules, workload="shop/web")


def used(found: Scheduled) -> set[str]:
    return {n for n, k in found.plan.replicas.items() if k}


def spread(by: str, low: int = 1, high: int | None = None) -> dict[str, object]:
    return {"spreadBy": by, "minGroups": low, **({"maxGroups": high} if high else {})}


# --- Karmada: select_clusters_by_region_test.go, Test_selectBestClustersByRegion -------------

R_1_2 = [  # R1 with 2 members, R2 with 3; each 40 replicas of room
    ("member1", "R1", 100, 40, 0),
    ("member2", "R1", 80, 40, 0),
    ("member3", "R2", 80, 40, 0),
    ("member4", "R2", 80, 40, 0),
    ("member5", "R2", 60, 40, 0),
]
R_4 = [
    ("member1", "R1", 90, 40, 0),
    ("member2", "R2", 70, 40, 0),
    ("member3", "R2", 60, 40, 0),
    ("member4", "R2", 30, 40, 0),
    ("member5", "R3", 80, 40, 0),
    ("member6", "R3", 50, 60, 0),
    ("member7", "R4", 50, 50, 0),
    ("member8", "R4", 40, 50, 0),
    ("member9", "R4", 10, 50, 0),
    ("member10", "R4", 1, 50, 0),  # Karmada's score 0; a weight 0 member takes no replica
]
R_5 = [
    ("member1", "R1", 70, 40, 0),
    ("member2", "R2", 40, 40, 0),
    ("member3", "R2", 40, 40, 0),
    ("member4", "R2", 40, 40, 0),
    ("member5", "R3", 60, 40, 0),
    ("member6", "R3", 50, 60, 0),
    ("member7", "R4", 70, 100, 0),
    ("member8", "R5", 50, 50, 0),
]


@pytest.mark.parametrize(
    ("case", "fleet", "constraints", "want"),
    [
        (
            "select cluster from the region with the higher score",
            R_1_2,
            [spread("region", 1, 1), spread("cluster", 2, 2)],
            {"member1", "member2"},
        ),
        (
            "select cluster from the region with enough clusters",
            R_1_2,
            [spread("region", 1, 1), spread("cluster", 3, 3)],
            {"member3", "member4", "member5"},
        ),
        # Karmada takes as few regions' clusters as meet the cluster min (member1-4, 4 clusters,
        # by score); fleetflow prefers the choice with the most members up to the max (5), then
        # the most weight: R2 and R3 (member2-6) hold 5 with the most weight of any pair.
        (
            "select cluster from the region with enough clusters and higher score",
            R_4,
            [spread("region", 2, 2), spread("cluster", 4, 5)],
            {"member2", "member3", "member4", "member5", "member6"},
        ),
        # Karmada: member1-6 over R1, R2, R3 by score. fleetflow: the same 6 members' worth of
        # regions, and between R1 and R4 (equal weight) the roomier R4.
        (
            "select cluster from more than minGroups regions with enough clusters",
            R_5,
            [spread("region", 1, 3), spread("cluster", 6, 8)],
            {"member2", "member3", "member4", "member5", "member6", "member7"},
        ),
        (
            "no enough region",
            R_1_2,
            [spread("region", 3, 3), spread("cluster", 3, 3)],
            "spread by region needs at least 3, at most 3, but its members span only 2 (R1, R2)",
        ),
        (
            "no enough clusters",
            R_1_2,
            [spread("region", 1, 1), spread("cluster", 4, 4)],
            "1 value(s) of region hold at most 3 of cluster with room (R2 3), and cluster needs 4",
        ),
        (
            "no more regions to replace",
            [("member1", "R1", 100, 40, 0), ("member2", "R1", 80, 20, 0)],
            [spread("region", 1, 1), spread("cluster", 3, 4)],
            "spread by cluster needs at least 3, at most 4, but its members span only 2",
        ),
    ],
)
def test_karmada_select_best_clusters_by_region(
    case: str, fleet: list[Member], constraints: list[dict[str, object]], want: set[str] | str
) -> None:
    for order in (constraints, constraints[::-1]):  # the order written never matters
        if isinstance(want, str):
            with pytest.raises(PlacementError, match=re.escape(want)):
                run(12, fleet, *order)
        else:
            assert used(run(12, fleet, *order)) == want, case


# --- Karmada: select_clusters_test.go, TestSelectBestClusters (spread by cluster alone) -------

BY_SCORE = [
    ("member4", "R2", 60, 50, 0),
    ("member2", "R1", 40, 60, 0),
    ("member3", "R2", 30, 80, 0),
    ("member1", "R1", 20, 40, 0),
]


@pytest.mark.parametrize(
    ("case", "total", "constraint", "want", "unplaced"),
    [
        (
            "select clusters by cluster score",
            100,
            spread("cluster", 1, 2),
            {"member4", "member2"},
            0,
        ),
        (
            "select clusters by cluster score and satisfy available resources",
            120,
            spread("cluster", 1, 2),
            {"member4", "member3"},
            0,
        ),
        # Karmada refuses ("no enough resource when selecting 2 clusters"); fleetflow places
        # what the roomiest two hold and reports the rest unplaced, as it does with no rules
        # (an affinity group after this one would be tried first).
        (
            "select clusters by cluster score and insufficient resources",
            200,
            spread("cluster", 1, 2),
            {"member3", "member2"},
            60,
        ),
        (
            "select clusters by cluster score and exceeded the number of available clusters",
            30,
            spread("cluster", 7, 7),
            "spread by cluster needs at least 7, at most 7, but its members span only 4",
            0,
        ),
    ],
)
def test_karmada_select_best_clusters(
    case: str, total: int, constraint: dict[str, object], want: set[str] | str, unplaced: int
) -> None:
    if isinstance(want, str):
        with pytest.raises(PlacementError, match=want):
            run(total, BY_SCORE, constraint)
        return
    found = run(total, BY_SCORE, constraint)
    assert used(found) == want, case
    assert found.plan.unplaced == unplaced


# --- Karmada: select_groups_test.go, TestSelectGroups ------------------------------------------
# A group is a region of ``value`` clusters with Karmada's score as each member's weight; the
# target is the cluster spread's minGroups. Karmada keeps the fewest regions that reach the
# target, by score; fleetflow, among the choices that meet every constraint, keeps the most
# members (the most room and spread), then the most weight. Where that differs, the case says so.

Group = tuple[str, int, int]  # region, clusters, weight


@pytest.mark.parametrize(
    ("case", "groups", "regions", "target", "want"),
    [
        ("empty groups", [], (2, 3), 1, "its members span only 0 (none)"),
        ("no enough groups", [("R1", 1, 80)], (2, 3), 1, "its members span only 1 (R1)"),
        (
            "no enough value",
            [("R1", 1, 80), ("R2", 2, 30)],
            (2, 3),
            4,
            "spread by cluster needs at least 4, but its members span only 3",
        ),
        ("select one group", [("R1", 1, 80)], (1, 3), 1, {"R1"}),
        (
            "prioritize one path",  # the only three regions that hold 10 clusters: as Karmada
            [
                ("R1", 1, 80),
                ("R3", 1, 80),
                ("R2", 1, 60),
                ("R5", 2, 60),
                ("R4", 5, 50),
                ("R6", 3, 50),
            ],
            (1, 3),
            10,
            {"R4", "R5", "R6"},
        ),
        (
            # Karmada: R1, R2 (the fewest regions that reach 5). fleetflow: no maxGroups binds
            # (6 regions, at most 6), so every region is kept.
            "select groups with less total number",
            [
                ("R1", 1, 80),
                ("R2", 4, 40),
                ("R3", 1, 30),
                ("R4", 3, 30),
                ("R5", 3, 20),
                ("R6", 5, 10),
            ],
            (2, 6),
            5,
            {"R1", "R2", "R3", "R4", "R5", "R6"},
        ),
        (
            # Karmada: R1, R4, R5 by score. fleetflow: the three regions with the most members.
            "select groups with the highest score",
            [
                ("R1", 1, 60),
                ("R2", 1, 50),
                ("R3", 1, 40),
                ("R4", 3, 30),
                ("R5", 3, 20),
                ("R6", 3, 10),
            ],
            (1, 3),
            6,
            {"R4", "R5", "R6"},
        ),
        (
            # Karmada: R1, R4 (5 clusters, the highest score). fleetflow: R3, R4 (7 clusters).
            "select groups that are chosen earlier",
            [("R1", 1, 60), ("R2", 2, 50), ("R3", 3, 40), ("R4", 4, 30)],
            (1, 2),
            5,
            {"R3", "R4"},
        ),
        (
            # Karmada: R3, R1 (6 clusters). fleetflow: 7 clusters, R2 and R3 the heavier pair.
            "select groups with greater value",
            [("R4", 1, 60), ("R3", 3, 50), ("R1", 3, 40), ("R2", 4, 30)],
            (1, 2),
            5,
            {"R2", "R3"},
        ),
    ],
)
def test_karmada_select_groups(
    case: str, groups: list[Group], regions: tuple[int, int], target: int, want: set[str] | str
) -> None:
    fleet = [(f"{r}-{i}", r, w, None, 0) for r, k, w in groups for i in range(k)]
    rules = (spread("region", *regions), spread("cluster", target))
    if isinstance(want, str):
        with pytest.raises(PlacementError, match=re.escape(want)):
            run(20, fleet, *rules)
        return
    assert {n.split("-")[0] for n in used(run(20, fleet, *rules))} == want, case


# --- what was seen to break before the values were chosen together ---------------------------


def test_a_region_spread_is_never_given_up_for_a_roomier_region() -> None:
    fleet = [(f"a{i}", "R1", 1, 100, 0) for i in (1, 2, 3)] + [
        (f"b{i}", "R2", 1, 40, 0) for i in (1, 2)
    ]
    found = run(12, fleet, spread("region", 2, 2), spread("cluster", 1, 3))
    assert {n[0] for n in used(found)} == {"a", "b"} and len(used(found)) == 3
    assert found.notes == (
        "spread by region (at least 2, at most 2): R1 (3 members with room), R2 (2)",
        "spread by cluster (at least 1, at most 3): a2, a3, b1; one member per region first",
    )


def test_the_order_of_the_constraints_never_changes_the_answer() -> None:
    fleet = [("m1", "R1", 1, None, 0), ("m2", "R1", 1, None, 0)] + [
        (f"m{i}", "R2", 1, None, 0) for i in (3, 4, 5)
    ]
    one = run(12, fleet, spread("cluster", 3, 3), spread("region", 1, 1))
    other = run(12, fleet, spread("region", 1, 1), spread("cluster", 3, 3))
    assert one.plan.replicas == other.plan.replicas
    assert used(one) == {"m3", "m4", "m5"}


def test_single_member_regions_can_meet_a_cluster_spread() -> None:
    fleet = [(f"s{i}", f"R{i}", 1, 100, 0) for i in range(1, 4)] + [
        (f"d{i}", "R9", 1, 10, 0) for i in range(1, 6)
    ]
    found = run(20, fleet, spread("region", 1, 3), spread("cluster", 6, 8))
    assert 6 <= len(used(found)) <= 8
    assert unmet(found.plan.replicas, {n: {REGION_LABEL: r} for n, r, *_ in fleet}, []) is None


def test_a_cluster_minimum_is_never_silently_unmet() -> None:
    fleet = [("m1", "us", 1, None, 0), ("m2", "eu", 1, None, 0)]
    with pytest.raises(PlacementError, match="region hold at most 1 of cluster"):
        run(1, fleet, spread("cluster", 2, 2), spread("region", 1, 1))
    with pytest.raises(PlacementError, match="1 replicas cannot meet the spread"):
        run(1, fleet, spread("cluster", 2, 2))


def test_what_already_runs_is_a_preference_never_a_reason_to_fail() -> None:
    fleet = [("e1", "eu", 1, None, 0), ("e2", "eu", 1, None, 0), ("u1", "us", 1, None, 1)]
    found = run(4, fleet, spread("region", 1, 1), spread("cluster", 2, 2))
    assert used(found) == {"e1", "e2"}
    assert found.plan.reasons["u1"] == "spread by region: us not among the 1 chosen"
    # And when both can meet it, the region already running it is kept.
    fleet.append(("u2", "us", 1, None, 0))
    assert used(run(4, fleet, spread("region", 1, 1), spread("cluster", 2, 2))) == {"u1", "u2"}


def test_the_reason_names_the_members_that_cannot_take_replicas() -> None:
    candidates = [
        Candidate(name="u1", weight=1),
        Candidate(name="e1", weight=1, healthy=False),
        Candidate(name="e2", weight=1, fenced=True),
    ]
    facts = {"u1": Facts({REGION_LABEL: "us"})} | {
        n: Facts({REGION_LABEL: "eu"}) for n in ("e1", "e2")
    }
    rules = Rules(spread=[SpreadConstraint(spreadBy="region", minGroups=2)])
    with pytest.raises(PlacementError) as refused:
        schedule(4, candidates, facts, rules, workload="shop/web")
    assert str(refused.value) == (
        "shop/web: spread by region needs at least 2, but only 1 can take replicas now (us): the "
        "others have no healthy member with room (eu: e1 unhealthy, e2 fenced)"
    )


def test_labels_that_do_not_nest_are_checked_again_and_reported() -> None:
    """Zone and provider cross; a choice is still never returned when it breaks one."""
    names = {"a": ("z1", "p1"), "b": ("z1", "p2"), "c": ("z2", "p1"), "d": ("z2", "p2")}
    candidates = [Candidate(name=n, weight=1) for n in names]
    facts = {n: Facts({ZONE_LABEL: z, "provider": p}) for n, (z, p) in names.items()}
    rules = Rules(
        spread=[
            SpreadConstraint(spreadBy="zone", minGroups=2, maxGroups=2),
            SpreadConstraint(spreadBy="provider", minGroups=1, maxGroups=1),
        ]
    )
    found = schedule(4, candidates, facts, rules, workload="shop/web")
    on = used(found)
    assert len({names[n][0] for n in on}) == 2 and len({names[n][1] for n in on}) == 1


def test_an_empty_affinity_group_is_refused_by_the_model_and_the_crd() -> None:
    with pytest.raises(ValidationError, match="clusters is empty and would match no member"):
        AffinityGroup.model_validate({"name": "eu", "clusters": []})
    (version,) = federated_deployment_crd()["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    group = spec["properties"]["placement"]["properties"]["affinityGroups"]["items"]
    assert group["properties"]["clusters"]["minItems"] == 1


# --- Karmada: plugins/tainttoleration/taint_toleration_test.go, TestTaintToleration_Filter ---


@pytest.mark.parametrize(
    ("case", "taint", "tolerations", "current", "want", "reason"),
    [
        # Karmada lets a cluster the binding already uses pass whatever its taints; fleetflow
        # keeps what it runs under a NoSchedule taint but gives it no new replica (NoExecute
        # moves them away), so the case keeps its 2 of 6, not a third.
        (
            "cluster already in target clusters",
            "key1=value1:NoSchedule",
            [],
            2,
            2,
            "taint key1=value1:NoSchedule not tolerated: keeps 2, no new replicas",
        ),
        ("no taints", None, [], 0, 3, "weight share"),
        (
            "tolerated taint",
            "key1=value1:NoSchedule",
            [{"key": "key1", "operator": "Equal", "value": "value1", "effect": "NoSchedule"}],
            0,
            3,
            "weight share",
        ),
        (
            "untolerated taint",
            "key1=value1:NoSchedule",
            [],
            0,
            0,
            "taint key1=value1:NoSchedule not tolerated: keeps 0, no new replicas",
        ),
    ],
)
def test_karmada_taint_toleration_filter(
    case: str,
    taint: str | None,
    tolerations: list[dict[str, str]],
    current: int,
    want: int,
    reason: str,
) -> None:
    candidates = [
        Candidate(name="cluster1", weight=1, current=current),
        Candidate(name="cluster2", weight=1, current=6 - current),
    ]
    facts = {
        "cluster1": Facts({}, [Taint.parse(taint)] if taint else []),
        "cluster2": Facts({}),
    }
    rules = Rules(tolerations=[Toleration.model_validate(t) for t in tolerations])
    found = schedule(6, candidates, facts, rules, workload="shop/web")
    assert found.plan.replicas["cluster1"] == want, case
    assert found.plan.reasons["cluster1"].startswith(reason), found.plan.reasons["cluster1"]


# --- Kubernetes: staging/src/k8s.io/api/core/v1/toleration_test.go, ToleratesTaint ----------


@pytest.mark.parametrize(
    ("case", "toleration", "taint", "tolerated"),
    [
        (
            "same key and effect, operator Exists, taint has no value",
            {"key": "foo", "operator": "Exists", "effect": "NoSchedule"},
            "foo:NoSchedule",
            True,
        ),
        (
            "same key and effect, operator Exists, taint has some value",
            {"key": "foo", "operator": "Exists", "effect": "NoSchedule"},
            "foo=bar:NoSchedule",
            True,
        ),
        (
            "same key, effect and value, operator Equal",
            {"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"},
            "foo=bar:NoSchedule",
            True,
        ),
        (
            "same key and effect, different values, operator Equal",
            {"key": "foo", "operator": "Equal", "value": "value1", "effect": "NoSchedule"},
            "foo=value2:NoSchedule",
            False,
        ),
        (
            "same key and value, different effects, operator Equal",
            {"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"},
            "foo=bar:NoExecute",
            False,
        ),
        # Kubernetes' rule that an empty effect matches every effect (taint_test.go's
        # TestMatchTaint family), kept here beside the others.
        (
            "empty effect matches every effect",
            {"key": "foo", "value": "bar"},
            "foo=bar:NoExecute",
            True,
        ),
    ],
)
def test_kubernetes_tolerates_taint(
    case: str, toleration: dict[str, str], taint: str, tolerated: bool
) -> None:
    assert Toleration.model_validate(toleration).tolerates(Taint.parse(taint)) is tolerated, case


def test_kubernetes_cases_fleetflow_refuses_on_purpose() -> None:
    """``key: ""`` with ``Exists`` tolerates every taint in Kubernetes, the fence included:
    fleetflow asks for a key, so that no workload can stay on a fenced member. ``Gt`` and
    ``Lt`` (numeric taint values) are not offered."""
    with pytest.raises(ValidationError, match="key"):
        Toleration.model_validate({"key": "", "operator": "Exists"})
    with pytest.raises(ValidationError, match="'Equal' or 'Exists'"):
        Toleration.model_validate({"key": "sla", "operator": "Gt", "value": "950"})


# --- properties against a brute-force search --------------------------------------------------

REGIONS = ["us", "eu", "ap"]


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Candidate], dict[str, Facts]]:
    count = draw(st.integers(1, 7))
    candidates, facts = [], {}
    for i in range(count):
        name = f"m{i}"
        candidates.append(
            Candidate(
                name=name,
                weight=draw(st.integers(0, 3)),
                capacity=draw(st.one_of(st.none(), st.integers(0, 6))),
                healthy=draw(st.integers(0, 5)) > 0,
                current=draw(st.integers(0, 3)),
            )
        )
        facts[name] = Facts({REGION_LABEL: draw(st.sampled_from(REGIONS))})
    if not any(c.weight for c in candidates):
        candidates[0] = candidates[0]._replace(weight=1)
    return candidates, facts


def constraints() -> st.SearchStrategy[list[SpreadConstraint]]:
    def one(by: str, top: int) -> st.SearchStrategy[SpreadConstraint]:
        return st.tuples(st.integers(1, top), st.one_of(st.none(), st.integers(1, top))).map(
            lambda b: SpreadConstraint(
                spreadBy=by, minGroups=b[0], maxGroups=None if b[1] is None else max(b)
            )
        )

    return st.tuples(one("region", 3), one("cluster", 6)).flatmap(
        lambda pair: st.sampled_from([[pair[0]], [pair[1]], [pair[0], pair[1]]])
    )


def satisfiable(
    total: int, candidates: list[Candidate], facts: dict[str, Facts], rules: list[SpreadConstraint]
) -> bool:
    """Whether some members, each given a replica, cover every min with no max broken."""
    open_ = [c.name for c in candidates if c.healthy and c.weight and c.capacity != 0]
    for size in range(1, min(total, len(open_)) + 1):
        for chosen in combinations(open_, size):
            if all(
                r.min_groups
                <= len({r.value(n, facts[n].labels) for n in chosen})
                <= (r.max_groups or 99)
                for r in rules
            ):
                return True
    return False


EXHAUSTIVE = settings(max_examples=300, deadline=None)


@EXHAUSTIVE
@given(fleets(), st.integers(1, 14), constraints())
def test_a_satisfiable_spread_is_met_and_an_unsatisfiable_one_refused(
    fleet: tuple[list[Candidate], dict[str, Facts]], total: int, rules: list[SpreadConstraint]
) -> None:
    candidates, facts = fleet
    possible = satisfiable(total, candidates, facts, rules)
    results = []
    for order in permutations(rules):
        try:
            found = schedule(total, candidates, facts, Rules(spread=order), workload="w/x")
        except PlacementError as exc:
            assert not possible, f"refused a satisfiable spread: {exc}"
            results.append(None)
            continue
        assert possible, f"returned an unsatisfiable spread: {found.plan.replicas}"
        labels = {n: f.labels for n, f in facts.items()}
        assert unmet(found.plan.replicas, labels, rules) is None
        results.append(found.plan.replicas)
    assert all(r == results[0] for r in results), "the order of the constraints changed it"


# --- over many rebalance runs: each run's plan is the next run's running replicas -------------


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(REGIONS), min_size=2, max_size=6),
    constraints(),
    st.integers(1, 12),
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=1, max_size=10),
)
def test_spread_holds_run_after_run_while_members_fail_and_return(
    regions: list[str],
    rules: list[SpreadConstraint],
    total: int,
    events: list[tuple[int, bool]],
) -> None:
    names = [f"m{i}" for i in range(len(regions))]
    down: set[str] = set()
    running: dict[str, int] = {}
    spread_rules = [r.model_dump(by_alias=True, exclude_none=True) for r in rules]
    for index, fails in [(0, False), *events, (0, False)]:
        name = names[index % len(names)]
        (down.add if fails else down.discard)(name)
        views = {
            n: MemberView(
                name=n,
                labels={REGION_LABEL: r},
                health=HealthState(health=Health.UNHEALTHY if n in down else Health.HEALTHY),
                deployments={KEY: Observed(replicas=running[n], ready=running[n])}
                if running.get(n)
                else {},
            )
            for n, r in zip(names, regions, strict=True)
        }
        plan = plan_workload(workload(total, spread_rules), views)
        candidates = [Candidate(name=n, weight=1, healthy=n not in down) for n in names]
        facts = {n: Facts({REGION_LABEL: r}) for n, r in zip(names, regions, strict=True)}
        possible = satisfiable(total, candidates, facts, rules)
        if plan.error is not None:
            assert not possible, plan.error
            continue  # an unmet spread changes nothing: the members run what they ran
        assert possible, plan.replicas
        labels = {n: {REGION_LABEL: r} for n, r in zip(names, regions, strict=True)}
        assert unmet(plan.replicas, labels, rules) is None
        assert sum(plan.replicas.values()) + plan.unplaced == total
        running = dict(plan.replicas)
    if plan.error is None:  # a fixed point: planned again, nothing changes
        for n, view in views.items():
            k = running.get(n, 0)
            view.deployments = {KEY: Observed(replicas=k, ready=k)} if k else {}
        assert plan_workload(workload(total, spread_rules), views).replicas == running


KEY = "shop/web"


def workload(total: int, spread_rules: list[dict[str, object]]) -> FederatedDeployment:
    return FederatedDeployment.from_object(
        {
            "metadata": {"name": "web", "namespace": "shop", "generation": 1},
            "spec": {
                "replicas": total,
                "template": {"spec": {"template": {"spec": {"containers": [{"name": "w"}]}}}},
                "placement": {"spreadConstraints": spread_rules},
            },
        }
    )
