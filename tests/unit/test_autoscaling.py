"""Federated autoscaling without clusters: the division, budget moves, member HPAs, writes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.autoscaling import (
    Autoscaler,
    AutoscalingSpec,
    Budget,
    divide,
    read_autoscaler,
)
from fleetflow.errors import PlacementError
from fleetflow.federated import ANNOTATION_HASH, FederatedDeployment, member_autoscaler
from fleetflow.health import Health, HealthState
from fleetflow.placement import Candidate
from fleetflow.propagation import member_workload
from fleetflow.rebalance import MemberView, Observed, plan_workload
from fleetflow.scheduling import Taint
from fleetflow.writes import ready_keys, workload_status, write_plan
from tests.unit.test_rebalance_pure import fd as plain

NAMES = ("eu", "us", "us2")


def spec(low: int = 3, high: int = 12, step: int = 2, hysteresis: int = 1) -> AutoscalingSpec:
    return AutoscalingSpec(
        min_replicas=low, max_replicas=high, max_budget_move=step, hysteresis=hysteresis
    )


def members(**weights: int) -> list[Candidate]:
    return [Candidate(name=n, weight=weights.get(n, 1)) for n in NAMES]


def feed(budget: Budget, **load: tuple[int, int]) -> dict[str, Autoscaler]:
    """Member HPAs as ``budget`` wrote them, each running and wanting ``load[m]``
    (current, wanted); by default idle at its min."""
    seen = {}
    for m, share in budget.shares.items():
        current, wanted = load.get(m, (share.min, share.min))
        seen[m] = Autoscaler(
            min=share.min,
            max=share.max,
            current=min(current, share.max),
            desired=min(wanted, share.max),
            wanted=wanted,
            limited=wanted > share.max,
        )
    return seen


def maxes(budget: Budget) -> dict[str, int]:
    return {m: s.max for m, s in budget.shares.items()}


def test_first_division_splits_min_and_max_by_weight_and_starts_from_replicas() -> None:
    budget = divide(spec(3, 12), members(eu=2), {}, workload="shop/web", replicas=4)
    assert maxes(budget) == {"eu": 6, "us": 3, "us2": 3}
    assert sum(s.min for s in budget.shares.values()) == 3
    assert all(s.min >= 1 for s in budget.shares.values())
    assert sum(s.start for s in budget.shares.values()) == 4
    assert [m.target for m in budget.moves] == ["eu", "us", "us2"]
    assert "first division" in budget.moves[0].reason


@given(
    weights=st.lists(st.integers(0, 5), min_size=3, max_size=3),
    low=st.integers(1, 10),
    extra=st.integers(0, 30),
    replicas=st.integers(0, 50),
)
def test_a_division_holds_the_budget_and_every_runner_gets_at_least_one_of_min(
    weights: list[int], low: int, extra: int, replicas: int
) -> None:
    if not any(weights):
        weights[0] = 1
    cands = members(**dict(zip(NAMES, weights, strict=True)))
    budget = divide(spec(low, low + extra), cands, {}, workload="a/b", replicas=replicas)
    shares = budget.shares.values()
    assert sum(s.max for s in shares) + budget.unplaced == low + extra
    assert all(1 <= s.min <= s.start <= s.max for s in shares)
    assert sum(s.min for s in shares) >= min(low, sum(s.max for s in shares))
    # Fed back as written, idle: the next run changes nothing.
    again = divide(spec(low, low + extra), cands, feed(budget), workload="a/b", replicas=replicas)
    assert maxes(again) == maxes(budget)
    assert {m: s.min for m, s in again.shares.items()} == {
        m: s.min for m, s in budget.shares.items()
    }
    assert again.moves == []


@given(high=st.integers(3, 60), more=st.integers(0, 30))
def test_raising_max_never_lowers_a_members_share(high: int, more: int) -> None:
    cands = members(eu=3, us=2)
    before = divide(spec(1, high), cands, {}, workload="a/b", replicas=1)
    after = divide(spec(1, high + more), cands, {}, workload="a/b", replicas=1)
    assert all(after.shares[m].max >= s.max for m, s in before.shares.items())


def test_a_member_at_its_max_takes_budget_from_idle_members_bounded_per_run() -> None:
    first = divide(spec(3, 12, step=2), members(), {}, workload="shop/web", replicas=3)
    assert maxes(first) == {"eu": 4, "us": 4, "us2": 4}
    seen = feed(first, eu=(4, 9))  # eu at max, wants 9; the others idle at 1
    moved = divide(spec(3, 12, step=2), members(), seen, workload="shop/web", replicas=3)
    assert sum(maxes(moved).values()) == 12
    assert maxes(moved)["eu"] == 6
    assert sum(m.replicas for m in moved.moves) == 2
    assert {m.target for m in moved.moves} == {"eu"}
    assert "eu at max 4 wants 9" in moved.moves[0].reason
    # Runs go on until eu has what it asks for or the others keep only use + hysteresis.
    budget = moved
    for _ in range(5):
        seen = feed(budget, eu=(9, 9))
        budget = divide(spec(3, 12, step=2), members(), seen, workload="shop/web", replicas=3)
    assert maxes(budget) == {"eu": 8, "us": 2, "us2": 2}  # each uses 1 and keeps 1 more


def test_a_donor_keeps_what_it_uses_plus_hysteresis() -> None:
    first = divide(spec(3, 12, step=12), members(), {}, workload="a/b", replicas=3)
    seen = feed(first, eu=(4, 30), us=(3, 3), us2=(4, 4))
    moved = divide(spec(3, 12, step=12), members(), seen, workload="a/b", replicas=3)
    assert maxes(moved) == {"eu": 4, "us": 4, "us2": 4}  # us gives 0: 3 used + 1 kept = 4
    seen = feed(first, eu=(4, 30), us=(1, 1), us2=(2, 2))
    moved = divide(spec(3, 12, step=12), members(), seen, workload="a/b", replicas=3)
    assert maxes(moved) == {"eu": 4 + 2 + 1, "us": 2, "us2": 3}


def test_load_that_falls_returns_budget_towards_the_fair_shares() -> None:
    first = divide(spec(3, 12), members(), {}, workload="a/b", replicas=3)
    busy = feed(first, eu=(4, 9))
    budget = divide(spec(3, 12, step=12), members(), busy, workload="a/b", replicas=3)
    assert maxes(budget) == {"eu": 8, "us": 2, "us2": 2}
    # Load gone: eu now uses 1; shares drift back, at most step a run.
    back = divide(spec(3, 12, step=2), members(), feed(budget), workload="a/b", replicas=3)
    assert maxes(back)["eu"] == 6
    assert all("load fell" in m.reason for m in back.moves)
    for _ in range(3):
        back = divide(spec(3, 12, step=2), members(), feed(back), workload="a/b", replicas=3)
    assert maxes(back) == maxes(first)


def test_within_hysteresis_nothing_comes_back() -> None:
    first = divide(spec(3, 12), members(), {}, workload="a/b", replicas=3)
    busy = divide(
        spec(3, 12, step=12), members(), feed(first, eu=(4, 9)), workload="a/b", replicas=3
    )
    # eu still uses 9 of its 9: it keeps them, and nothing moves.
    kept = divide(spec(3, 12), members(), feed(busy, eu=(9, 9)), workload="a/b", replicas=3)
    assert maxes(kept) == maxes(busy)
    assert kept.moves == []


def test_a_lost_members_budget_goes_to_the_survivors_at_once() -> None:
    first = divide(spec(3, 12), members(), {}, workload="a/b", replicas=3)
    down = [c._replace(healthy=c.name != "us2") for c in members()]
    after = divide(spec(3, 12, step=1), down, feed(first), workload="a/b", replicas=3)
    assert set(after.shares) == {"eu", "us"}
    assert sum(maxes(after).values()) == 12  # owed budget is not limited by the step
    assert all("us2 no longer placeable" in m.reason for m in after.moves)
    assert sum(s.min for s in after.shares.values()) >= 3


def test_a_member_a_rule_leaves_out_gives_its_budget_back_as_a_lost_one_does() -> None:
    """A NoExecute taint the workload does not tolerate (scheduling leaves the member in, with
    weight, min and max 0): its HPA's budget used to stay there, and its replicas with it."""
    first = divide(spec(3, 12), members(), {}, workload="a/b", replicas=3)
    out = [c._replace(weight=0, min=0, max=0) if c.name == "us2" else c for c in members()]
    after = divide(spec(3, 12, step=1), out, feed(first), workload="a/b", replicas=3)
    assert set(after.shares) == {"eu", "us"}
    assert sum(maxes(after).values()) == 12
    assert all("us2 no longer placeable" in m.reason for m in after.moves)


def test_owed_budget_goes_first_to_a_member_that_wants_more() -> None:
    first = divide(spec(3, 12), members(), {}, workload="a/b", replicas=3)
    down = [c._replace(fenced=c.name == "us2") for c in members()]
    after = divide(spec(3, 12), down, feed(first, eu=(4, 8)), workload="a/b", replicas=3)
    assert maxes(after) == {"eu": 8, "us": 4}


def test_lowering_max_takes_budget_back_from_the_most_spare_first() -> None:
    first = divide(spec(3, 12), members(), {}, workload="a/b", replicas=3)
    seen = feed(first, eu=(4, 4), us=(3, 3))
    after = divide(spec(3, 9), members(), seen, workload="a/b", replicas=3)
    assert sum(maxes(after).values()) == 9
    assert maxes(after)["us2"] < 4
    assert maxes(after)["eu"] == 4


@pytest.mark.parametrize(
    ("low", "high", "mins", "line"),
    [
        (5, 3, {}, "minReplicas 5 is above maxReplicas 3"),
        (1, 2, {"eu": 1, "us": 1, "us2": 1}, "maxReplicas 2 is below the 3 members that must run"),
    ],
)
def test_impossible_budgets_are_refused(
    low: int, high: int, mins: dict[str, int], line: str
) -> None:
    cands = [Candidate(name=n, min=mins.get(n, 0)) for n in NAMES]
    with pytest.raises(PlacementError, match=line):
        divide(spec(low, high), cands, {}, workload="a/b", replicas=1)


def hpa(**status: Any) -> dict[str, Any]:
    return {
        "spec": {
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 50},
                    },
                }
            ],
        },
        "status": status,
    }


def test_what_an_hpa_wants_comes_from_its_utilization_and_its_limit() -> None:
    busy = hpa(
        currentReplicas=4,
        desiredReplicas=4,
        currentMetrics=[
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 80}}}
        ],
        conditions=[{"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas"}],
    )
    seen = read_autoscaler(busy)
    assert (seen.min, seen.max, seen.current, seen.desired) == (1, 4, 4, 4)
    assert seen.wanted == 7  # ceil(4 * 80 / 50)
    assert seen.limited and seen.wants_more
    calm = read_autoscaler(hpa(currentReplicas=2, desiredReplicas=1))
    assert calm.wanted == 1 and not calm.wants_more and calm.used == 2
    # Limited on a metric it cannot compute: one more than its max.
    limited = hpa(
        currentReplicas=4,
        desiredReplicas=4,
        conditions=[{"type": "ScalingLimited", "status": "True", "reason": "TooManyReplicas"}],
    )
    assert read_autoscaler(limited).wanted == 5


# --- the workload: its plan, its member objects, its writes ----------------------------------


def autoscaled(low: int = 2, high: int = 9, **extra: Any) -> FederatedDeployment:
    body = plain(replicas=3).model_dump(by_alias=True)
    obj = {
        "metadata": {"name": "web", "namespace": "shop", "generation": 4},
        "spec": {
            **body["spec"],
            "autoscaling": {"minReplicas": low, "maxReplicas": high, **extra},
        },
    }
    return FederatedDeployment.from_object(obj)


def run_as_written(workload: FederatedDeployment, plan: Any) -> dict[str, MemberView]:
    """The members after a run wrote ``plan``: each Deployment at what the HPA set, each HPA
    as written, idle."""
    views = {}
    for m in NAMES:
        share = plan.budget.shares.get(m)
        deployments, autoscalers = {}, {}
        if share is not None:
            manifest = member_workload("Deployment", workload, m, None, "prod")
            digest = manifest["metadata"]["annotations"][ANNOTATION_HASH]
            deployments["shop/web"] = Observed(
                replicas=share.min, ready=share.min, spec_hash=digest
            )
            hpa = member_autoscaler(workload, share.min, share.max, "prod")
            autoscalers["shop/web"] = Autoscaler(
                min=share.min,
                max=share.max,
                current=share.min,
                desired=share.min,
                wanted=share.min,
                spec_hash=hpa["metadata"]["annotations"][ANNOTATION_HASH],
            )
        views[m] = MemberView(name=m, deployments=deployments, autoscalers=autoscalers)
    return views


def test_member_workloads_leave_the_count_to_their_hpa() -> None:
    workload = autoscaled()
    new = member_workload("Deployment", workload, "eu", 2, "prod")
    kept = member_workload("Deployment", workload, "eu", None, "prod")
    assert new["spec"]["replicas"] == 2 and "replicas" not in kept["spec"]
    digest = new["metadata"]["annotations"][ANNOTATION_HASH]
    assert kept["metadata"]["annotations"][ANNOTATION_HASH] == digest
    hpa = member_autoscaler(workload, 1, 3, "prod")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
    assert hpa["metadata"]["labels"]["fleetflow.io/federation"] == "prod"


def test_a_new_autoscaled_workload_is_created_with_its_hpas_and_then_writes_nothing() -> None:
    workload = autoscaled()
    empty = {m: MemberView(name=m) for m in NAMES}
    plan = plan_workload(workload, empty)
    assert plan.budget is not None and plan.error is None
    writes = write_plan([workload], {workload.key: plan}, empty, "prod")
    for m in NAMES:
        (manifest,) = writes.ups[m].apply
        assert manifest["spec"]["replicas"] == plan.replicas[m]
        assert writes.ups[m].seeds == {"shop/web": plan.replicas[m]}
        assert [h["spec"]["maxReplicas"] for h in writes.ups[m].autoscalers] == [3]
        assert writes.ups[m].new_autoscalers == ["shop/web"]
    assert sum(plan.replicas.values()) == 3
    steady = run_as_written(workload, plan)
    again = plan_workload(workload, steady)
    assert write_plan([workload], {workload.key: again}, steady, "prod").ups == {}
    assert again.budget is not None and again.budget.moves == []


def test_budget_moves_write_the_falling_hpas_first_and_the_rising_one_after() -> None:
    workload = autoscaled(2, 9, maxBudgetMove=2)
    plan = plan_workload(workload, {m: MemberView(name=m) for m in NAMES})
    views = run_as_written(workload, plan)
    busy = (
        views["eu"]
        .autoscalers["shop/web"]
        .model_copy(update={"current": 3, "desired": 3, "wanted": 6, "limited": True})
    )
    views["eu"] = views["eu"].model_copy(update={"autoscalers": {"shop/web": busy}})
    moved = plan_workload(workload, views)
    assert moved.budget is not None
    assert {m: s.max for m, s in moved.budget.shares.items()} == {"eu": 5, "us": 2, "us2": 2}
    writes = write_plan([workload], {workload.key: moved}, views, "prod")
    assert sorted(writes.ups) == ["us", "us2"]
    assert [h["spec"]["maxReplicas"] for h in writes.downs["eu"].autoscalers] == [5]
    assert all(not w.apply for w in [*writes.ups.values(), *writes.downs.values()])
    status = workload_status(workload, moved)
    assert status is not None and status.status.last_budget_move is not None
    assert status.status.last_budget_move.target == "eu"
    eu = next(c for c in status.status.clusters if c.name == "eu")
    assert (eu.min_replicas, eu.max_replicas, eu.autoscaler_desired) == (1, 5, 3)


def test_a_failed_members_budget_moves_in_the_first_phase_and_the_total_holds() -> None:
    workload = autoscaled(2, 9)
    plan = plan_workload(workload, {m: MemberView(name=m) for m in NAMES})
    recorded = workload_status(workload, plan)
    assert recorded is not None
    views = run_as_written(workload, plan)
    gone = {"autoscalers": {}, "deployments": {}, "reachable": False}
    views["us2"] = views["us2"].model_copy(
        update={**gone, "health": HealthState(health=Health.SUSPECT)}
    )
    suspect = plan_workload(recorded, views)  # it holds its share while only suspect
    assert suspect.budget is not None and suspect.budget.moves == []
    assert suspect.budget.shares["us2"].max == 3
    views["us2"] = views["us2"].model_copy(update={"health": HealthState(health=Health.UNHEALTHY)})
    failed = plan_workload(recorded, views)
    assert failed.budget is not None
    assert set(failed.budget.shares) == {"eu", "us"}
    assert sum(s.max for s in failed.budget.shares.values()) == 9
    assert all("us2 no longer placeable (held 3)" in m.reason for m in failed.budget.moves)
    writes = write_plan([workload], {workload.key: failed}, views, "prod")
    assert sorted(writes.ups) == ["eu", "us"]
    assert "us2" not in writes.downs  # unreachable: nothing to write there


def test_a_no_execute_taint_moves_the_budget_and_its_replicas_wait_on_the_hpas_raised() -> None:
    """The survivors' HPAs are raised in the first phase, with no Deployment written (the count
    is theirs): a rebalance must still wait for those replicas Ready before it removes the
    tainted member's, or the workload runs below its minReplicas meanwhile."""
    workload = autoscaled(3, 6)
    views = run_as_written(
        workload, plan_workload(workload, {m: MemberView(name=m) for m in NAMES})
    )
    views["us"] = views["us"].model_copy(update={"taints": [Taint.parse("maintenance:NoExecute")]})
    moved = plan_workload(workload, views)
    assert moved.remove_from == ["us"] and set(moved.replicas) == {"eu", "us2"}
    assert sum(moved.replicas.values()) >= 3  # minReplicas, on the members left
    writes = write_plan([workload], {workload.key: moved}, views, "prod")
    assert sorted(writes.ups) == ["eu", "us2"] and list(writes.downs) == ["us"]
    assert all(not w.apply and w.applied_keys() == ["shop/web"] for w in writes.ups.values())
    floors = ready_keys({workload.key: moved}, list(NAMES))
    assert moved.budget is not None
    # minReplicas on the members left, Ready before "us" goes
    assert floors["eu"]["shop/web"] + floors["us2"]["shop/web"] >= 3
    assert "shop/web" not in floors["us"]


def test_the_wait_for_an_hpa_raised_count_stops_at_what_the_hpa_must_reach() -> None:
    """A member's HPA that last asked for more than its min may go back down while a run waits
    (its load gone): the run waits for its min, never for a count the HPA no longer wants."""
    workload = autoscaled(2, 6)
    plan = plan_workload(workload, {m: MemberView(name=m) for m in NAMES})
    views = run_as_written(workload, plan)
    # eu's HPA asked for its max (a burst) and got it; the next plan keeps that count.
    eu = views["eu"]
    hpa = eu.autoscalers["shop/web"]
    burst = hpa.max
    assert burst > hpa.min
    views["eu"] = eu.model_copy(
        update={
            "deployments": {
                "shop/web": eu.deployments["shop/web"].model_copy(
                    update={"replicas": burst, "ready": burst}
                )
            },
            "autoscalers": {
                "shop/web": hpa.model_copy(
                    update={"current": burst, "desired": burst, "wanted": burst}
                )
            },
        }
    )
    again = plan_workload(workload, views)
    assert again.budget is not None and again.replicas["eu"] == burst
    floors = ready_keys({workload.key: again}, list(NAMES))
    assert floors["eu"]["shop/web"] == again.budget.shares["eu"].min < burst
    for m, share in again.budget.shares.items():
        assert floors[m].get("shop/web", 0) == min(again.replicas.get(m, 0), share.min)
    assert sum(f.get("shop/web", 0) for f in floors.values()) >= 2  # the workload's min


def test_turning_autoscaling_off_deletes_the_hpas_before_the_count_is_set() -> None:
    workload = autoscaled()
    plan = plan_workload(workload, {m: MemberView(name=m) for m in NAMES})
    views = run_as_written(workload, plan)
    off = plain(replicas=6)
    manual = plan_workload(off, views)
    writes = write_plan([off], {off.key: manual}, views, "prod")
    for m in NAMES:
        phase = writes.ups.get(m) or writes.downs[m]
        assert phase.unscale == ["shop/web"]
        (manifest,) = phase.apply
        assert manifest["spec"]["replicas"] == 2
        assert not phase.seeds
