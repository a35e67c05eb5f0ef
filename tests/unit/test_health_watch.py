"""Health in counts and time, and the health watcher's decisions: pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.capacity import Resources
from fleetflow.health import Health, HealthPolicy, HealthState, observe
from fleetflow.lease import Lease
from fleetflow.models import WatchRequest
from fleetflow.probes import assess
from fleetflow.rebalance import MemberObservation, Observed
from fleetflow.registry import MemberCluster
from fleetflow.watch import (
    HEARTBEAT_SECONDS,
    MEMBER_HEALTHY,
    MEMBER_RECOVERED,
    MEMBER_RECOVERING,
    MEMBER_SUSPECT,
    MEMBER_UNHEALTHY,
    REGION_RECOVERED,
    REGION_UNHEALTHY,
    Probe,
    Round,
    WatchReport,
    member_event_name,
    regions_down_from,
    watch_deadline,
    watch_lease_name,
    watch_round,
    watched_status,
    watcher_holds,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
H, S, U, R = Health.HEALTHY, Health.SUSPECT, Health.UNHEALTHY, Health.RECOVERING
CYCLE = {(H, S), (S, U), (U, R), (R, H), (S, H), (R, U)}
"""The moves a state may make (besides staying): along the cycle, or back when a streak breaks."""

policies = st.builds(
    HealthPolicy,
    failure_threshold=st.integers(1, 5),
    failure_seconds=st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0]),
    success_threshold=st.integers(1, 5),
    success_seconds=st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0]),
)
gaps = st.floats(0.1, 5.0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_default_policy_suits_the_watcher() -> None:
    """Probes every 2 s: a member down for good is Unhealthy after 10 s of failures (6 probes);
    down for 8 s (an apiserver restart) it is only ever Suspect."""
    policy, state = HealthPolicy(), HealthState()
    seen = []
    for t in range(0, 14, 2):
        state = observe(state, False, policy, at(t))
        seen.append(state.health)
    assert seen == [S, S, S, S, S, U, U]
    flap = HealthState()
    for t, ok in [(0, False), (2, False), (4, False), (6, False), (8, True), (10, True)]:
        flap = observe(flap, ok, policy, at(t))
        assert flap.health is not U
    assert flap == HealthState()


def test_recovery_needs_successes_over_time_and_a_relapse_is_unhealthy_again() -> None:
    policy = HealthPolicy()
    sick = HealthState(health=U, consecutive_failures=2)
    state = observe(sick, True, policy, at(0))
    assert state == HealthState(health=R, consecutive_successes=1, since=at(0))
    state = observe(state, True, policy, at(2))
    assert state.health is R and state.since == at(0)  # two good probes, but only 2 s
    assert observe(state, True, policy, at(10)) == HealthState()
    assert observe(state, False, policy, at(4)).health is U


def test_per_run_policy_counts_runs_only() -> None:
    policy = HealthPolicy().per_run()
    assert policy.failure_seconds == policy.success_seconds == 0
    state = observe(HealthState(), False, policy, T0)
    assert observe(state, False, policy, T0).health is U  # two runs, however close


@given(policies, st.lists(st.tuples(st.booleans(), gaps), max_size=60))
def test_states_only_move_along_the_cycle(
    policy: HealthPolicy, probes: list[tuple[bool, float]]
) -> None:
    state, t = HealthState(), 0.0
    degenerate_down = policy.failure_threshold == 1 and policy.failure_seconds == 0
    degenerate_up = policy.success_threshold == 1 and policy.success_seconds == 0
    for ok, gap in probes:
        t += gap
        after = observe(state, ok, policy, at(t))
        move = (state.health, after.health)
        assert (
            move[0] is move[1]
            or move in CYCLE
            or (move == (H, U) and degenerate_down)
            or (move == (U, H) and degenerate_up)
        ), move
        state = after


@given(
    policies,
    st.lists(st.tuples(st.integers(1, 20), st.integers(1, 20)), min_size=1, max_size=20),
    gaps,
)
def test_a_member_flapping_faster_than_the_thresholds_never_becomes_unhealthy(
    policy: HealthPolicy, flaps: list[tuple[int, int]], interval: float
) -> None:
    """Outages each shorter than ``failure_seconds`` or fewer probes than
    ``failure_threshold``, separated by good probes: never Unhealthy."""
    state, t = HealthState(), 0.0
    for down, up in flaps:
        failures = min(down, policy.failure_threshold - 1)
        if policy.failure_seconds > 0:  # or as many as fit in less than the minimum time
            failures = max(failures, min(down, int((policy.failure_seconds - 1e-6) / interval)))
        for _ in range(failures):
            state = observe(state, False, policy, at(t))
            t += interval
            assert state.health is not U
        for _ in range(up):
            state = observe(state, True, policy, at(t))
            t += interval
            assert state.health is H


@given(policies, gaps, st.integers(0, 10))
def test_a_member_down_for_longer_always_becomes_unhealthy(
    policy: HealthPolicy, interval: float, extra: int
) -> None:
    """Failing probes spanning more than ``failure_seconds``, at least ``failure_threshold``
    of them: always Unhealthy, and out of placement."""
    state, t = HealthState(), 0.0
    span = math.ceil(policy.failure_seconds / interval) + 2  # one probe past the minimum time
    probes = max(policy.failure_threshold, span) + extra
    for _ in range(probes):
        state = observe(state, False, policy, at(t))
        t += interval
    assert state.health is U
    assert not state.placeable


def test_watch_request_defaults() -> None:
    request = WatchRequest(federation="demo")
    assert (request.probe_interval, request.probe_timeout) == (2.0, 2.0)
    assert request.watch_seconds > 600  # outlives the 10-minute schedule: no gap
    with pytest.raises(ValueError):
        WatchRequest(federation="demo", probe_interval=0)
    with pytest.raises(ValueError):
        WatchRequest(federation="")


def member(name: str, region: str | None = "us", **status: object) -> MemberCluster:
    spec: dict[str, object] = {"federation": "prod", "credentialsBlock": f"prod-{name}"}
    spec["apiURL"] = f"https://{name}"
    if region:
        spec["region"] = region
    return MemberCluster.from_object(
        {"metadata": {"name": name, "namespace": "ff"}, "spec": spec, "status": status}
    )


ROOM = Resources(cpu=8000, memory=2**30, pods=110)


def up(name: str) -> Probe:
    return Probe(
        name=name, api_ready=True, nodes_ready=3, nodes_total=3, allocatable=ROOM, workloads=1
    )


def down(name: str) -> Probe:
    return Probe(name=name, error="/readyz: cannot connect")


def test_probe_is_good_when_ready_with_a_node_and_reports_workloads_without_judging() -> None:
    assert up("a").ok and up("a").nodes_share == 1.0
    assert not down("a").ok
    no_nodes = Probe(name="a", api_ready=True, nodes_total=3)
    assert not no_nodes.ok and no_nodes.nodes_share == 0.0
    failing_workload = up("a").model_copy(update={"workloads": 2, "workloads_ready": 0})
    assert failing_workload.ok
    assert "0/2 workloads Ready" in failing_workload.summary()


def test_event_names_follow_the_transition() -> None:
    assert member_event_name(H, S) == MEMBER_SUSPECT
    assert member_event_name(S, U) == MEMBER_UNHEALTHY
    assert member_event_name(U, R) == MEMBER_RECOVERING
    assert member_event_name(R, H) == MEMBER_RECOVERED
    assert member_event_name(S, H) == MEMBER_HEALTHY
    assert member_event_name(R, U) == MEMBER_UNHEALTHY
    assert member_event_name(U, H) == MEMBER_RECOVERED


def rounds(
    registry: list[MemberCluster],
    script: list[dict[str, bool]],
    policy: HealthPolicy | None = None,
    interval: float = 2.0,
) -> list[Round]:
    """Run rounds as the watcher does: memory carried, the registry updated by the writes."""
    policy = policy or HealthPolicy()
    states: dict[str, HealthState] = {}
    down_regions: set[str] = set()
    out = []
    for i, oks in enumerate(script):
        probes = {n: up(n) if ok else down(n) for n, ok in oks.items()}
        found = watch_round(
            "prod", registry, states, probes, policy, at(i * interval), down_regions
        )
        written = {m.name: m for m in found.changed}
        registry = [written.get(m.name, m) for m in registry]
        states, down_regions = found.states, found.regions_down
        out.append(found)
    return out


def test_a_quiet_federation_writes_nothing_and_announces_nothing() -> None:
    first = rounds([member("a")], [{"a": True}])[0]
    assert [m.name for m in first.changed] == ["a"]  # never probed: nodes and health recorded
    settled = first.changed
    again = rounds(settled, [{"a": True}] * 5)
    assert all(r.changed == [] and r.events == [] for r in again)


def test_writes_and_events_only_on_transitions_with_the_labels() -> None:
    settled = rounds([member("a", region="us-east")], [{"a": True}])[0].changed
    script = [{"a": False}] * 7 + [{"a": True}] * 7
    seen = rounds(settled, script)
    events = [e for r in seen for e in r.events]
    assert [e.event for e in events if e.member] == [
        MEMBER_SUSPECT,
        MEMBER_UNHEALTHY,
        MEMBER_RECOVERING,
        MEMBER_RECOVERED,
    ]
    assert [e.event for e in events if not e.member] == [REGION_UNHEALTHY, REGION_RECOVERED]
    writes = [r for r in seen if r.changed]
    assert len(writes) == 4  # one per change of health, none in between
    unhealthy = next(e for e in events if e.event == MEMBER_UNHEALTHY)
    assert unhealthy.resource == {
        "prefect.resource.id": "fleetflow.member.prod.a",
        "prefect.resource.name": "a",
        "fleetflow.federation": "prod",
        "fleetflow.member": "a",
        "fleetflow.region": "us-east",
    }
    assert unhealthy.payload["from"] == "Suspect" and unhealthy.occurred == at(10)
    assert unhealthy.payload["since"] == at(0).isoformat()
    region = next(e for e in events if e.event == REGION_UNHEALTHY)
    assert region.resource["prefect.resource.id"] == "fleetflow.region.prod.us-east"
    assert region.payload == {"members": {"a": "Unhealthy"}}
    recorded = writes[1].changed[0]
    assert recorded.status.health is U and recorded.status.nodes_ready == 3  # kept while down
    assert recorded.status.conditions[0].status == "False"


def test_a_flap_shorter_than_the_thresholds_is_suspect_then_healthy_and_nothing_else() -> None:
    settled = rounds([member("a")], [{"a": True}])[0].changed
    seen = rounds(settled, [{"a": False}] * 3 + [{"a": True}] * 3)
    events = [e.event for r in seen for e in r.events]
    assert events == [MEMBER_SUSPECT, MEMBER_HEALTHY]


def test_a_region_is_down_only_when_every_member_is_and_announced_once() -> None:
    registry = [member("a", "east"), member("b", "east"), member("c", "west")]
    settled = rounds(registry, [{"a": True, "b": True, "c": True}])[0].changed
    only_a = rounds(settled, [{"a": False, "b": True, "c": True}] * 8)
    assert REGION_UNHEALTHY not in [e.event for r in only_a for e in r.events]
    both = rounds(settled, [{"a": False, "b": False, "c": True}] * 8)
    region_events = [(e.event, e.region) for r in both for e in r.events if not e.member]
    assert region_events == [(REGION_UNHEALTHY, "east")]
    # b comes back, a stays down: still no recovery; then a too: recovered, once.
    script = [{"a": False, "b": False, "c": True}] * 8
    script += [{"a": False, "b": True, "c": True}] * 8 + [{"a": True, "b": True, "c": True}] * 8
    region_events = [
        (e.event, e.region) for r in rounds(settled, script) for e in r.events if not e.member
    ]
    assert region_events == [(REGION_UNHEALTHY, "east"), (REGION_RECOVERED, "east")]


def test_a_takeover_continues_from_the_registry_and_the_region_memory() -> None:
    """A new watcher starts with no memory: the registry's Suspect (and when it began) and
    the regions announced down carry the streaks over."""
    suspect = HealthState(health=S, consecutive_failures=1, since=at(0))
    entry = member("a", "east")
    entry = entry.model_copy(update={"status": watched_status(entry, suspect, down("a"), at(0))})
    assert entry.health == suspect  # written and read back with its start
    found = watch_round("prod", [entry], {}, {"a": down("a")}, HealthPolicy(), at(10), {"east"})
    assert found.states["a"].health is U
    assert [e.event for e in found.events] == [MEMBER_UNHEALTHY]  # the region: already down
    assert regions_down_from({"east": REGION_UNHEALTHY, "west": REGION_RECOVERED}) == {"east"}


def test_the_watcher_lease_decides_who_owns_health() -> None:
    assert watch_lease_name("demo") == "fleetflow-health-demo"
    fresh = Lease(holder="run-1", renewed=T0, duration=15)
    assert watcher_holds(fresh, at(10))
    assert not watcher_holds(fresh, at(16))  # stopped renewing: crashed
    assert not watcher_holds(Lease(holder=None, renewed=T0), at(1))  # released
    assert not watcher_holds(None, T0)
    assert watch_deadline(T0, 630) == at(630)


def test_rebalance_with_a_watcher_takes_the_registry_health_and_writes_no_status() -> None:
    sick = member("a", health="Unhealthy", consecutiveFailures=2)
    answering = MemberObservation(
        name="a", reachable=True, nodes_ready=3, nodes_total=3, allocatable=ROOM, free=ROOM
    )
    watched = assess([sick], {"a": answering}, HealthPolicy(), T0, watched=True)
    assert watched.changed == [] and watched.transitions == []
    assert watched.members["a"].health.health is U and watched.members["a"].reachable
    alone = assess([sick], {"a": answering}, HealthPolicy(), T0)
    assert alone.members["a"].health.health is R  # its own hysteresis, per run
    assert [m.name for m in alone.changed] == ["a"]


def test_a_member_without_a_region_has_no_region_label_and_no_region_events() -> None:
    settled = rounds([member("a", region=None)], [{"a": True}])[0].changed
    seen = rounds(settled, [{"a": False}] * 7)
    events = [e for r in seen for e in r.events]
    assert [e.event for e in events] == [MEMBER_SUSPECT, MEMBER_UNHEALTHY]
    assert "fleetflow.region" not in events[0].resource


def test_the_heartbeat_line_says_the_rounds_and_what_each_member_is() -> None:
    report = WatchReport(federation="prod", watcher="w")
    report.rounds = [T0] * 30
    states = {"b": HealthState(health=S), "a": HealthState()}
    assert (
        report.heartbeat(states) == "round 30: a Healthy, b Suspect; 0 health changes in this run"
    )
    assert HEARTBEAT_SECONDS >= 60  # a log line a minute at most, whatever the probe interval


def test_one_probe_serves_health_and_placement_alike() -> None:
    seen = up("a").model_copy(
        update={"free": ROOM, "deployments": {"shop/web": Observed(replicas=2, ready=1)}}
    )
    placement = seen.observation()
    assert placement.ok == seen.ok and placement.reachable
    assert placement.free == ROOM and placement.allocatable == ROOM
    assert placement.deployments["shop/web"].ready == 1
    gone = down("a").observation()
    assert not gone.ok and not gone.reachable and gone.error == "/readyz: cannot connect"
