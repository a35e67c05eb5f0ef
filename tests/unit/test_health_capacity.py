"""Health hysteresis and free capacity: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from fleetflow.capacity import Resources, free, pod_requests, quantities, replicas_that_fit
from fleetflow.health import Health, HealthPolicy, HealthState, observe

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
RUN = timedelta(minutes=5)  # probes a rebalance schedule apart: past every minimum time


def run(probes: list[bool], policy: HealthPolicy | None = None) -> list[Health]:
    policy = policy or HealthPolicy()
    state, seen = HealthState(), []
    for i, ok in enumerate(probes):
        state = observe(state, ok, policy, T0 + i * RUN)
        seen.append(state.health)
    return seen


def test_one_failed_probe_never_evicts() -> None:
    assert run([False, True, False, True]) == [
        Health.SUSPECT,
        Health.HEALTHY,
        Health.SUSPECT,
        Health.HEALTHY,
    ]
    assert HealthState(health=Health.SUSPECT).placeable


def test_threshold_failures_evict_and_threshold_successes_restore() -> None:
    assert run([False, False, True, True]) == [
        Health.SUSPECT,
        Health.UNHEALTHY,
        Health.RECOVERING,
        Health.HEALTHY,
    ]
    assert not HealthState(health=Health.RECOVERING).placeable
    assert run([False, False, True, False, True, True]) == [
        Health.SUSPECT,
        Health.UNHEALTHY,
        Health.RECOVERING,
        Health.UNHEALTHY,
        Health.RECOVERING,
        Health.HEALTHY,
    ]


@given(st.lists(st.booleans(), max_size=40), st.integers(1, 4), st.integers(1, 4))
def test_state_changes_need_runs_of_probes(probes: list[bool], fail: int, succeed: int) -> None:
    """Placeability flips only after `fail` failures or `succeed` successes in a row."""
    policy = HealthPolicy(failure_threshold=fail, success_threshold=succeed)
    state = HealthState()
    for i, ok in enumerate(probes):
        before = state.placeable
        state = observe(state, ok, policy, T0 + i * RUN)
        if before and not state.placeable:
            assert probes[max(0, i - fail + 1) : i + 1] == [False] * fail
        if not before and state.placeable:
            assert probes[max(0, i - succeed + 1) : i + 1] == [True] * succeed


def node(name: str, ready: bool = True, cpu: str = "4", memory: str = "8Gi") -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pod(node_name: str, cpu: str, memory: str, phase: str = "Running") -> dict[str, object]:
    return {
        "spec": {
            "nodeName": node_name,
            "containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}],
        },
        "status": {"phase": phase},
    }


def test_quantities_parse_kubernetes_units() -> None:
    assert quantities({"cpu": "1500m", "memory": "1Gi", "pods": "10"}) == Resources(
        cpu=1500, memory=1 << 30, pods=10
    )
    assert quantities({"cpu": "2"}).cpu == 2000


def test_free_counts_ready_nodes_minus_running_pods() -> None:
    nodes = [node("a"), node("b"), node("c", ready=False)]
    pods = [
        pod("a", "1", "1Gi"),
        pod("b", "500m", "512Mi"),
        pod("c", "4", "8Gi"),
        pod("a", "4", "8Gi", phase="Succeeded"),
    ]
    left = free(nodes, pods)
    assert left == Resources(cpu=8000 - 1500, memory=(16 << 30) - (1536 << 20), pods=218)


def test_replicas_that_fit_is_bounded_by_the_scarcest_resource() -> None:
    per = pod_requests(
        {"containers": [{"resources": {"requests": {"cpu": "500m", "memory": "3Gi"}}}]}
    )
    assert per == Resources(cpu=500, memory=3 << 30, pods=1)
    assert replicas_that_fit(Resources(cpu=8000, memory=10 << 30, pods=100), per) == 3
    assert replicas_that_fit(Resources(cpu=-100, memory=10 << 30, pods=100), per) == 0
    no_requests = pod_requests({"containers": [{}]})
    assert replicas_that_fit(Resources(cpu=0, memory=0, pods=7), no_requests) == 7
