"""Failover planning, traffic records, operation records, leases and drill verdicts: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.capacity import Resources
from fleetflow.drill import (
    PHASE_MARKS,
    DrillMode,
    Mark,
    Sample,
    Targets,
    Verdict,
    abandoned,
    answers_missing,
    drill_marks,
    drill_phases,
    judge,
    not_returning,
)
from fleetflow.errors import InvalidRequest, UnknownName
from fleetflow.failover import (
    Outcome,
    as_if_ready,
    decide_failover,
    ended_by_failback,
    evacuation,
    plan_failover,
)
from fleetflow.federated import Exposure, FederatedDeployment
from fleetflow.lease import Lease, free_for, manifest
from fleetflow.objects import FederatedObjects
from fleetflow.operations import Operation, Phase, finished, started, step_done
from fleetflow.probes import Assessment
from fleetflow.rebalance import HostView, MemberView, Observed
from fleetflow.registry import MemberCluster
from fleetflow.scheduling import Taint
from fleetflow.snapshot import Snapshot
from fleetflow.traffic import endpoint, endpoints, expected_answers, record, to_write, unchanged
from tests.unit.test_rebalance_pure import fd

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
REGIONS = {"us1": "us", "us2": "us", "eu1": "eu"}


def registry(**ingress: str | None) -> list[MemberCluster]:
    return [
        MemberCluster.new(
            "prod",
            "ff",
            name,
            api_url=f"https://{name}",
            credentials_block=f"prod-{name}",
            service_account="sa",
            region=region,
            ingress_address=ingress.get(name, f"10.0.0.{i}"),
        )
        for i, (name, region) in enumerate(REGIONS.items(), start=1)
    ]


def test_evacuation_checks_the_request_before_anything_is_written() -> None:
    target = evacuation(registry(), "us", [])
    assert target.members == ["us1", "us2"] and target.survivors == ["eu1"]
    assert target.operation_name == "failover-us"
    by_members = evacuation(registry(), None, ["us2"])
    assert by_members.operation_name == evacuation(registry(), None, ["us2"]).operation_name
    with pytest.raises(UnknownName, match="no member is in region 'mars'; regions: eu, us"):
        evacuation(registry(), "mars", [])
    with pytest.raises(UnknownName, match="unknown member"):
        evacuation(registry(), None, ["nope"])
    with pytest.raises(InvalidRequest, match="leaves no member"):
        evacuation(registry(), None, ["us1", "us2", "eu1"])
    with pytest.raises(InvalidRequest, match="not both"):
        evacuation(registry(), "us", ["eu1"])


def views(free_pods: dict[str, int], running: dict[str, int]) -> dict[str, MemberView]:
    return {
        name: MemberView(
            name=name,
            free=Resources(cpu=10**6, memory=2**40, pods=free_pods.get(name, 100)),
            deployments={"shop/web": Observed(replicas=running[name], ready=running[name])}
            if running.get(name)
            else {},
        )
        for name in REGIONS
    }


def web(replicas: int, name: str = "web") -> FederatedDeployment:
    workload = fd(replicas)
    return workload.model_copy(update={"name": name})


def test_failover_spreads_the_region_over_the_survivors_by_room() -> None:
    members = views({"us1": 3, "us2": 100}, {"us1": 2, "us2": 2, "eu1": 2})
    plan = plan_failover([web(6)], members, ["eu1"])
    p = plan.plans["shop/web"]
    assert p.replicas == {"eu1": 0, "us1": 3, "us2": 3}
    assert plan.floors == {"shop/web": 4}  # the survivors' Ready replicas never go below
    assert plan.unplaced == {}


def test_what_does_not_fit_is_reported_not_dropped() -> None:
    members = views({"us1": 1, "us2": 1}, {"us1": 2, "us2": 2, "eu1": 4})
    plan = plan_failover([web(8)], members, ["eu1"])
    assert sum(plan.plans["shop/web"].replicas.values()) == 6
    assert plan.unplaced == {"shop/web": 2}
    assert plan.stranded == []  # short of room, yet it keeps 6 replicas


def test_a_held_workload_in_the_region_keeps_running_and_answering_there_and_is_said() -> None:
    held = exposed("ledger").model_copy(update={"migration": "migrate-shop-ledger"})
    members = {
        **views({}, {}),
        "eu1": views({}, {})["eu1"].model_copy(
            update={"deployments": {"shop/ledger": Observed(replicas=1, ready=1)}}
        ),
    }
    target = evacuation(registry(), "eu", [])
    plan = decide_failover(target, snapshot(registry(), [held], members), federation="p", zone="z")
    assert plan.plan.plans["shop/ledger"].replicas == {"eu1": 1}  # a migration's: not moved
    assert plan.plan.held == {"shop/ledger": ["eu1"]} and plan.plan.stranded == []
    assert "kept on eu1 (fenced)" in plan.plan.notes()[0]
    # Fenced, it still answers: nothing else runs it, and dropping it would cut its traffic.
    assert expected_answers(plan.traffic(plan.plan.plans)) == {"ledger.z": ["10.0.0.3"]}
    # Once another member serves it, the fenced member's answer goes.
    both = plan.plan.plans["shop/ledger"].model_copy(update={"ready": {"eu1": 1, "us1": 1}})
    assert expected_answers(plan.traffic({"shop/ledger": both})) == {"ledger.z": ["10.0.0.1"]}


def test_a_workload_pinned_to_the_region_is_left_without_replicas_and_said_so() -> None:
    members = views({}, {"us1": 2, "us2": 2, "eu1": 2})
    pinned = fd(2, clusters=["eu1"]).model_copy(update={"name": "ledger"})
    plan = plan_failover([web(6), pinned], members, ["eu1"])
    assert plan.stranded == ["shop/ledger"] and plan.unplaced == {"shop/ledger": 2}
    assert plan.outcome().model_dump() == {
        "unplaced": {"shop/ledger": 2},
        "stranded": ["shop/ledger"],
        "held": {},
    }
    assert plan.notes() == [
        "shop/ledger: 2 replicas could not be placed: none left to serve while the region is away"
    ]
    # The member stopped (unreachable: it shows nothing running): stranded all the same.
    gone = {**members, "eu1": members["eu1"].model_copy(update={"deployments": {}})}
    assert plan_failover([pinned], gone, ["eu1"]).stranded == ["shop/ledger"]


def test_room_taken_by_one_workload_is_not_given_to_the_next() -> None:
    members = views({"us1": 2, "us2": 2}, {"eu1": 2})
    first, second = web(2, "a"), web(2, "b")
    plan = plan_failover([first, second], members, ["eu1"])
    placed = [sum(p.replicas.values()) for p in plan.plans.values()]
    assert placed == [2, 2]
    members = views({"us1": 1, "us2": 1}, {"eu1": 2})
    plan = plan_failover([first, second], members, ["eu1"])
    assert sorted(plan.unplaced.values()) == [2]  # the second finds no room left


@given(st.dictionaries(st.sampled_from(list(REGIONS)), st.integers(0, 8), min_size=3))
def test_the_region_always_ends_at_zero_and_nothing_is_lost(running: dict[str, int]) -> None:
    total = sum(running.values())
    plan = plan_failover([web(total)], views({}, running), ["us1", "us2"])
    p = plan.plans["shop/web"]
    assert p.replicas["us1"] == p.replicas["us2"] == 0
    assert p.replicas["eu1"] + plan.unplaced.get("shop/web", 0) == total


def exposed(name: str = "web") -> FederatedDeployment:
    workload = web(3, name)
    spec = workload.spec.model_copy(update={"dns": Exposure(hostname=name, ttl=5)})
    return workload.model_copy(update={"spec": spec})


def test_traffic_goes_only_to_members_with_ready_replicas_that_may_serve() -> None:
    workload = exposed()
    members = views({}, {"us1": 1, "us2": 1, "eu1": 1})
    members["eu1"] = members["eu1"].model_copy(update={"fenced": True})
    plans = as_if_ready(plan_failover([workload], members, ["eu1"]).plans)
    ingress = {m.name: m.spec.ingress_address for m in registry()}
    wanted, problems = endpoints([workload], plans, members, ingress, "fleet.local", "prod")
    assert problems == []
    assert expected_answers(wanted) == {"web.fleet.local": ["10.0.0.1", "10.0.0.2"]}
    assert wanted[0]["spec"]["endpoints"][0]["recordTTL"] == 5
    assert unchanged(wanted[0], {"spec": wanted[0]["spec"]})
    assert not unchanged(wanted[0], None)
    key = f"{wanted[0]['metadata']['namespace']}/{wanted[0]['metadata']['name']}"
    assert to_write(wanted, {key: {"spec": wanted[0]["spec"]}}) == []  # a no-op sends nothing
    assert to_write(wanted, {}) == wanted
    assert to_write(wanted, {key: {"spec": {"endpoints": []}}}) == wanted
    empty = endpoint(workload, record(workload, "z", [], ingress), "prod")
    assert empty["spec"] == {"endpoints": []}  # nowhere to go: no answer, not a wrong one


def test_a_member_without_an_ingress_address_cannot_take_traffic() -> None:
    workload = exposed()
    ingress = {m.name: m.spec.ingress_address for m in registry(us2=None)}
    with pytest.raises(InvalidRequest, match=r"member\(s\) us2 have no ingress address"):
        record(workload, "fleet.local", ["us1", "us2"], ingress)


def test_an_operation_records_each_step_once_and_resumes() -> None:
    op = Operation(name="failover-eu", namespace="ff", procedure="failover", federation="prod")
    op = started(op, NOW, "run-1")
    op = step_done(op, "fenced", NOW)
    again = step_done(op, "fenced", NOW + timedelta(seconds=5))
    assert again.status.steps == op.status.steps  # a rerun keeps the first time
    resumed = started(op, NOW + timedelta(seconds=9), "run-2")
    assert resumed.done("fenced") and resumed.status.started_at == op.status.started_at
    done = finished(step_done(resumed, "drained", NOW), Phase.SUCCEEDED, NOW)
    assert done.finished
    assert (
        Operation.from_object({**done.manifest(), "status": done.status_patch()["status"]}) == done
    )
    reverted = finished(done, Phase.REVERTED, NOW, "failed back")
    fresh = started(reverted, NOW, "run-3")
    assert fresh.status.steps == [] and not fresh.finished  # a new failover starts afresh


def test_a_lease_is_free_when_unheld_mine_or_lapsed() -> None:
    held = Lease(holder="a", renewed=NOW, duration=15, resource_version="7")
    assert free_for(None, "b", NOW)
    assert not free_for(held, "b", NOW + timedelta(seconds=10))
    assert free_for(held, "a", NOW + timedelta(seconds=10))
    assert free_for(held, "b", NOW + timedelta(seconds=16))
    taken = manifest("l", "ns", "b", NOW, 15, held)
    assert taken["metadata"]["resourceVersion"] == "7"  # conditional: one of two racers wins
    assert taken["spec"]["leaseTransitions"] == 1 and "acquireTime" in taken["spec"]
    assert Lease.from_object(taken).holder == "b"
    released = manifest("l", "ns", None, NOW, 15, Lease.from_object(taken))
    assert Lease.from_object(released).holder is None


def test_the_drill_verdict_measures_each_objective() -> None:
    t = {
        Mark.STARTED: NOW,
        Mark.FAULT: NOW + timedelta(seconds=1),
        Mark.DETECTED: NOW + timedelta(seconds=12),
        Mark.FAILOVER: NOW + timedelta(seconds=12),
        Mark.DNS_SWITCHED: NOW + timedelta(seconds=18),
        Mark.HEALED: NOW + timedelta(seconds=30),
    }
    ok = [
        Sample(at=NOW + timedelta(seconds=s), ready={"shop/web": 4}, answers={"w": ["10.0.0.1"]})
        for s in range(0, 35, 2)
    ]
    kept = Outcome()
    verdict = judge(
        "eu", DrillMode.STOP_CLUSTERS, t, ok, {"shop/web": 4}, {"10.0.0.3"}, Targets(), None, kept
    )
    assert verdict.passed, verdict.objectives
    assert [o.measured for o in verdict.objectives][:3] == ["yes", "11.0s", "6.0s"]
    broken = judge(
        "eu",
        DrillMode.STOP_CLUSTERS,
        t,
        ok,
        {"shop/web": 4},
        {"10.0.0.3"},
        Targets(),
        failure="failback: WaitTimeout",
    )
    assert not broken.passed and broken.objectives[0].measured == "failback: WaitTimeout"
    dip = [*ok, Sample(at=NOW + timedelta(seconds=5), ready={"shop/web": 3})]
    late_dns = [
        *ok,
        Sample(at=NOW + timedelta(seconds=20), ready={"shop/web": 4}, answers={"w": ["10.0.0.3"]}),
    ]
    assert not judge(
        "eu", DrillMode.STOP_CLUSTERS, t, dip, {"shop/web": 4}, {"10.0.0.3"}, Targets()
    ).passed
    assert not judge(
        "eu", DrillMode.STOP_CLUSTERS, t, late_dns, {"shop/web": 4}, {"10.0.0.3"}, Targets()
    ).passed
    slow = judge(
        "eu", DrillMode.STOP_CLUSTERS, t, ok, {"shop/web": 4}, {"10.0.0.3"}, Targets(detect=5)
    )
    assert not slow.passed and "| time to detect | < 5s | 11.0s | FAIL |" in slow.markdown()


def test_a_drill_that_leaves_a_workload_without_replicas_fails_and_says_which() -> None:
    t = {
        Mark.STARTED: NOW,
        Mark.FAILOVER: NOW + timedelta(seconds=1),
        Mark.DNS_SWITCHED: NOW + timedelta(seconds=3),
    }
    ok = [Sample(at=NOW + timedelta(seconds=s), ready={"shop/web": 4}) for s in range(5)]

    def verdict(failover: Outcome | None) -> tuple[bool, str]:
        found = judge(
            "eu", DrillMode.FENCE, t, ok, {"shop/web": 4}, set(), Targets(), None, failover
        )
        return found.passed, found.summary()

    # A floor of 0 holds for a workload pinned to the region: only the failover's record tells.
    passed, line = verdict(Outcome(unplaced={"shop/ledger": 1}, stranded=["shop/ledger"]))
    assert not passed and "1 left without: shop/ledger (target 0 left without)" in line
    passed, line = verdict(Outcome(unplaced={"shop/web": 2}))
    assert passed and "none left without (shop/web 2 short: no room)" in line
    passed, line = verdict(Outcome(held={"shop/ledger": ["eu1"]}))
    assert passed and "(held by a migration, kept in the region: shop/ledger on eu1)" in line
    # A failover that did not reach its drain kept nothing on its record.
    passed, line = verdict(Outcome.recorded({"unplaced": {}}))
    assert not passed and "not recorded: the failover did not finish" in line
    assert not verdict(None)[0]


def test_dns_is_restored_when_each_name_answers_the_region_as_before_the_fault() -> None:
    region = {"10.0.0.3"}
    before = {"web.z": ["10.0.0.1", "10.0.0.3"], "ledger.z": ["10.0.0.1"]}
    # ledger never answered the region: it waits for nothing (it used to wait forever).
    assert answers_missing(before, {"web.z": ["10.0.0.1"], "ledger.z": ["10.0.0.1"]}, region) == {
        "web.z": ["10.0.0.3"]
    }
    assert answers_missing(before, {"web.z": ["10.0.0.3", "10.0.0.1"]}, region) == {}
    assert answers_missing({"web.z": []}, {}, region) == {}
    # An address web does not return to (its rules keep it out) waits for nothing either.
    now = {"web.z": ["10.0.0.1"], "ledger.z": ["10.0.0.1"]}
    assert answers_missing(before, now, region, {"web.z": ["10.0.0.3"]}) == {}


def test_a_drill_knows_what_the_failback_will_not_return_and_says_why() -> None:
    """A NoSchedule taint set after replicas landed lets the member keep them, not take them
    back once a failover has emptied it: the drill used to wait 180 s for DNS and fail."""
    tainted = Taint.parse("dedicated=batch:NoSchedule")
    members = views({}, {"us1": 2, "us2": 2, "eu1": 2})
    members["us2"] = members["us2"].model_copy(update={"taints": [tainted]})
    web = fd(6)
    away = not_returning([web], members, ["us1", "us2"])
    assert list(away) == ["shop/web"] and list(away["shop/web"]) == ["us2"]
    assert "taint dedicated=batch:NoSchedule not tolerated" in away["shop/web"]["us2"]
    tolerant = fd(6, tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert not_returning([tolerant], members, ["us1", "us2"]) == {}
    assert not_returning([web], members, ["eu1"]) == {}  # eu1 untainted: web comes back
    line = judge(
        "us",
        DrillMode.FENCE,
        {},
        [],
        {},
        set(),
        Targets(detect=30, recover=20),
        failover=Outcome(),
        not_back=away,
    ).summary()
    assert "what the failback returns to the region not returned, by their rules: " in line
    assert "shop/web to us2 (taint dedicated=batch:NoSchedule not tolerated" in line


def snapshot(
    known: list[MemberCluster], workloads: list[FederatedDeployment], members: dict[str, MemberView]
) -> Snapshot:
    view = HostView(
        workloads=workloads,
        objects=FederatedObjects(),
        unassigned=[],
        members=known,
        watch_lease=None,
        endpoints={},
    )
    return Snapshot(view=view, found=Assessment(members=members), watched=False)


def test_the_failover_decision_holds_every_write_before_the_first() -> None:
    workload = exposed()
    members = views({}, {"us1": 1, "us2": 1, "eu1": 1})
    target = evacuation(registry(), "us", [])
    plan = decide_failover(
        target, snapshot(registry(), [workload], members), federation="prod", zone="z"
    )
    assert [m.name for m in plan.fence] == ["us1", "us2"]
    assert plan.views["us1"].fenced and not plan.members["us1"].fenced  # writes see them as is
    assert plan.plan.plans["shop/web"].replicas == {"eu1": 3, "us1": 0, "us2": 0}
    assert set(plan.writes.ups) == {"eu1"} and set(plan.writes.downs) == {"us1", "us2"}
    assert expected_answers(plan.planned_traffic()) == {"web.z": ["10.0.0.3"]}
    assert plan.unexposed == []
    # The fenced members' Ready replicas never make them an answer.
    assert expected_answers(plan.traffic(plan.plan.plans)) == {"web.z": ["10.0.0.3"]}


def test_a_failover_whose_traffic_cannot_move_is_refused_before_any_write() -> None:
    members = views({}, {"us1": 1, "us2": 1, "eu1": 1})
    target = evacuation(registry(eu1=None), "us", [])
    seen = snapshot(registry(eu1=None), [exposed()], members)
    plan = decide_failover(target, seen, federation="p", zone="z")
    assert plan.unexposed and "eu1" in plan.unexposed[0]


def test_a_failback_ends_every_failover_record_of_the_members_it_unfences() -> None:
    def record(name: str, members: list[str], phase: Phase | None) -> Operation:
        op = Operation(
            name=name,
            namespace="ff",
            procedure="failover",
            federation="prod",
            parameters={"members": members},
        )
        return op if phase is None else finished(op, phase, NOW)

    by_region = record("failover-eu", ["eu1"], Phase.SUCCEEDED)
    failed = record("failover-us", ["us1", "us2"], Phase.FAILED)
    done = record("failover-members-1", ["eu1"], Phase.REVERTED)
    fresh = record("failover-members-2", ["eu1"], None)  # never started: nothing to end
    migration = by_region.model_copy(update={"procedure": "migrate", "name": "m"})
    records = [by_region, failed, done, fresh, migration]
    # A failback by members ends the failover by region, and only the records it unfences.
    assert [o.name for o in ended_by_failback(records, ["eu1"])] == ["failover-eu"]
    assert [o.name for o in ended_by_failback(records, ["us2"])] == ["failover-us"]
    assert ended_by_failback(records, ["nope"]) == []


def test_a_drills_phases_follow_its_mode_and_its_dns() -> None:
    stop = drill_phases(DrillMode.STOP_CLUSTERS, dns=True)
    assert stop == (
        "fault-injected",
        "detected",
        "failed-over",
        "healed",
        "recovered",
        "failed-back",
        "dns-restored",
    )
    fence = drill_phases(DrillMode.FENCE, dns=False)
    assert "detected" not in fence and "dns-restored" not in fence


def test_a_drills_timeline_is_read_from_its_phases() -> None:
    at = {name: NOW + timedelta(seconds=i) for i, name in enumerate(PHASE_MARKS, start=1)}
    marks = drill_marks(NOW, at)
    assert marks[Mark.STARTED] == NOW and marks[Mark.FAULT] == at["fault-injected"]
    assert marks[Mark.FAILOVER] == at["detected"]  # the failover starts once detected
    assert marks[Mark.DNS_RESTORED] == at["dns-restored"]
    assert list(marks) == [m for m in Mark if m in marks]  # the verdict's table, in order
    ready = NOW + timedelta(seconds=2.5)
    with_failover = drill_marks(NOW, at, {Mark.SURVIVORS_READY: ready})
    assert list(with_failover) == [m for m in Mark if m in with_failover]
    assert with_failover[Mark.SURVIVORS_READY] == ready
    fenced = drill_marks(NOW, {"fault-injected": NOW})
    assert fenced[Mark.FAILOVER] == NOW and Mark.DETECTED not in fenced


def _drill_record(name: str, region: str, start: datetime, *steps: str) -> Operation:
    op = started(
        Operation(
            name=name,
            namespace="fed-system",
            procedure="drill",
            federation="fed",
            parameters={"region": region, "mode": "stop-clusters"},
        ),
        start,
        f"{name}-run",
    )
    for i, step in enumerate(steps, start=1):
        op = step_done(op, step, start + timedelta(seconds=i))
    return op


def _failover_record(region: str, start: datetime) -> Operation:
    op = Operation(
        name=f"failover-{region}", namespace="fed-system", procedure="failover", federation="fed"
    )
    return started(op, start, "run")


def test_a_drill_whose_run_died_is_found_and_what_it_left_said() -> None:
    # Killed after its failover began: its region is to be failed back, its record closed.
    died = _drill_record("drill-eu-dead", "eu", NOW, "fault-injected", "detected")
    # Killed before it failed anything over: the failover record is an older drill's.
    early = _drill_record("drill-us-early", "us", NOW, "fault-injected")
    # Finished, failed on its own, or this run's own record (a retried run resumes it).
    done = finished(_drill_record("drill-eu-done", "eu", NOW), Phase.SUCCEEDED, NOW)
    failed = finished(_drill_record("drill-eu-failed", "eu", NOW), Phase.FAILED, NOW, "why")
    own = _drill_record("drill-eu-mine", "eu", NOW)
    back = _drill_record("drill-eu-back", "eu", NOW, "failed-over", "healed", "failed-back")
    failovers = {
        "eu": _failover_record("eu", NOW + timedelta(seconds=3)),
        "us": _failover_record("us", NOW - timedelta(hours=1)),
    }
    found = abandoned([died, early, done, failed, own, back], "drill-eu-mine", failovers)
    by_name = {a.record.name: a for a in found}
    assert sorted(by_name) == ["drill-eu-back", "drill-eu-dead", "drill-us-early"]
    assert by_name["drill-eu-dead"].fail_back
    assert not by_name["drill-us-early"].fail_back  # its failover is not its own
    assert not by_name["drill-eu-back"].fail_back  # it failed back before it died
    assert by_name["drill-eu-dead"].mode is DrillMode.STOP_CLUSTERS
    # No failover record at all: nothing to fail back.
    assert not abandoned([died], "x", {"eu": None})[0].fail_back
    dead = by_name["drill-eu-dead"]
    dead.healed = ["eu1"]
    said = dead.closing("abcd1234")
    assert said.startswith("abandoned: its run drill-eu-dead-run stopped after detected")
    assert "drill run abcd1234 started eu1 and failed the region back" in said
    # The next drill's verdict says what it brought back before its own fault.
    verdict = Verdict(region="eu", mode=DrillMode.FENCE, brought_back=[f"drill-eu-dead {said}"])
    assert verdict.markdown().endswith(f"a drill whose run died: drill-eu-dead {said}")
    fresh = abandoned([_drill_record("drill-us-0", "us", NOW)], "x", {})[0]
    assert "stopped before its first phase" in fresh.closing("r")
    assert fresh.closing("r").endswith("found nothing to bring back")
