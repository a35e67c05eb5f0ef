"""What a rebalance writes and in what order, probes to registry status, deletion: pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.capacity import Resources
from fleetflow.errors import InvalidRequest
from fleetflow.federated import (
    FINALIZER,
    ClusterPlacement,
    FederatedDeployment,
    FederatedDeploymentStatus,
    member_deployment,
)
from fleetflow.health import Health, HealthPolicy, HealthState
from fleetflow.objects import FederatedObjectStatus, MemberObjectStatus, MemberState
from fleetflow.probes import assess
from fleetflow.propagation import MemberPass, ObjectKey, Outcome, Step
from fleetflow.rebalance import MemberObservation, MemberView, Observed, WorkloadPlan, plan_workload
from fleetflow.registry import MemberCluster
from fleetflow.writes import (
    MemberPropagation,
    Readiness,
    claims_kept,
    held_back,
    object_statuses,
    objects_to_release,
    plan_objects,
    to_protect,
    to_release,
    with_readiness,
    workload_status,
    write_plan,
)
from tests.unit.test_propagation_pure import federated
from tests.unit.test_rebalance_pure import fd

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MEMBERS = ("eu", "us", "us2")


def views(live: dict[str, int], reachable: tuple[str, ...] = MEMBERS) -> dict[str, MemberView]:
    """Members running the workload at ``live`` replicas, each as it was planned."""
    workload = fd()
    out = {}
    for name in MEMBERS:
        deployments = {}
        if name in live:
            digest = member_deployment(workload, name, live[name], "prod")["metadata"][
                "annotations"
            ]["fleetflow.io/spec-hash"]
            deployments["shop/web"] = Observed(replicas=live[name], spec_hash=digest)
        out[name] = MemberView(name=name, reachable=name in reachable, deployments=deployments)
    return out


counts = st.dictionaries(st.sampled_from(MEMBERS), st.integers(0, 6))


@given(live=counts, desired=counts)
def test_growth_first_shrink_after_and_nothing_for_what_is_already_right(
    live: dict[str, int], desired: dict[str, int]
) -> None:
    plan = WorkloadPlan(
        key="shop/web",
        replicas=desired,
        remove_from=sorted(set(live) - set(desired)),
    )
    writes = write_plan([fd()], {"shop/web": plan}, views(live), "prod")
    for member in MEMBERS:
        ups, downs = writes.ups.get(member), writes.downs.get(member)
        want, have = desired.get(member), live.get(member)
        applied = [m["spec"]["replicas"] for w in (ups, downs) if w for m in w.apply]
        if want is None:
            assert applied == []
            assert (downs is not None and downs.remove == ["shop/web"]) is (have is not None)
        elif want == have:
            assert applied == []  # no request at all
        else:
            assert applied == [want]
            assert (downs is not None and bool(downs.apply)) is (have is not None and want < have)
        assert ups is None or not ups.remove  # nothing is taken away before the wait


def test_unreachable_members_get_no_writes_and_invalid_plans_none_at_all() -> None:
    plan = WorkloadPlan(key="shop/web", replicas={"eu": 2, "us": 2, "us2": 2})
    writes = write_plan([fd()], {"shop/web": plan}, views({}, reachable=("eu",)), "prod")
    assert list(writes.ups) == ["eu"] and writes.downs == {}
    bad = plan.model_copy(update={"error": "nope"})
    assert write_plan([fd()], {"shop/web": bad}, views({}), "prod").ups == {}


def test_readiness_is_recorded_on_copies_and_holds_scale_downs_back() -> None:
    plans = {"shop/web": WorkloadPlan(key="shop/web", replicas={"eu": 3, "us": 1})}
    seen = {"eu": Readiness(ready={"shop/web": 2}, pending=["shop/web"])}
    updated = with_readiness(plans, seen)
    assert updated["shop/web"].ready == {"eu": 2} and plans["shop/web"].ready == {}
    assert held_back(seen, 30) == ["eu: not ready after 30s: shop/web; scale-downs held back"]
    assert held_back({"eu": Readiness(ready={"shop/web": 3})}, 30) == []


def test_workload_status_is_written_only_when_it_changes() -> None:
    workload = fd()
    plan = WorkloadPlan(key="shop/web", replicas={"eu": 2, "us": 1}, ready={"eu": 2}, unplaced=1)
    first = workload_status(workload, plan)
    assert first is not None
    wire = first.status_patch()["status"]
    assert wire["clusters"] == [
        {"name": "eu", "desired": 2, "ready": 2},
        {"name": "us", "desired": 1, "ready": 0},
    ]
    assert wire["observedGeneration"] == 3 and wire["unplaced"] == 1
    assert workload_status(first, plan) is None  # same again: no write
    broken = workload_status(first, plan.model_copy(update={"error": "bad weights"}))
    assert broken is not None
    assert broken.status.clusters == first.status.clusters  # the last good placement stays
    assert broken.status.conditions[0].reason == "Invalid"


def deleted(orphan: bool = False, last_seen: tuple[str, ...] = ()) -> FederatedDeployment:
    status = FederatedDeploymentStatus(
        clusters=[ClusterPlacement(name=m, desired=2) for m in last_seen]
    )
    return fd().model_copy(
        update={"deleting": True, "orphan": orphan, "finalizers": [FINALIZER], "status": status}
    )


def test_a_deleted_workload_leaves_every_member_in_the_first_phase() -> None:
    live = views({"eu": 2, "us": 2})
    workload = deleted()
    plan = plan_workload(workload, live)
    assert plan.deleting and plan.remove_from == ["eu", "us"] and plan.blocked_by == []
    writes = write_plan([workload], {workload.key: plan}, live, "prod")
    assert {m: w.remove for m, w in writes.ups.items()} == {"eu": ["shop/web"], "us": ["shop/web"]}
    assert to_release([workload], {workload.key: plan}, failed=[]) == [workload]
    assert to_release([workload], {workload.key: plan}, failed=["us"]) == []
    assert workload_status(workload, plan) is None


def test_an_unreachable_member_holds_the_deletion_until_it_is_back() -> None:
    live = views({"eu": 2}, reachable=("eu", "us2"))
    workload = deleted(last_seen=("eu", "us"))
    plan = plan_workload(workload, live)
    assert plan.remove_from == ["eu"] and plan.blocked_by == ["us"]
    assert to_release([workload], {workload.key: plan}, failed=[]) == []
    waiting = workload_status(workload, plan)
    assert waiting is not None and "us" in waiting.status.conditions[0].message


def test_orphaning_leaves_the_copies_and_lets_go_at_once() -> None:
    workload = deleted(orphan=True)
    plan = plan_workload(workload, views({"eu": 2, "us": 2}))
    assert plan.remove_from == [] and plan.blocked_by == []
    assert to_release([workload], {workload.key: plan}, failed=[]) == [workload]


def test_only_live_unprotected_workloads_get_the_finalizer() -> None:
    fresh, held = fd(), fd().model_copy(update={"finalizers": [FINALIZER]})
    assert to_protect([fresh, held, deleted()]) == [fresh]


def member(name: str, **status: object) -> MemberCluster:
    return MemberCluster.from_object(
        {
            "metadata": {"name": name, "namespace": "ff", "labels": {"region": "us"}},
            "spec": {"federation": "prod", "credentialsBlock": f"prod-{name}", "apiURL": "x"},
            "status": status,
        }
    )


def test_probes_move_health_with_hysteresis_and_write_only_changes() -> None:
    policy = HealthPolicy()
    room = Resources(cpu=8000, memory=2**30, pods=110)
    up = MemberObservation(
        name="a", reachable=True, nodes_ready=3, nodes_total=3, allocatable=room, free=room
    )
    first = assess([member("a")], {"a": up}, policy, NOW)
    assert [m.name for m in first.changed] == ["a"]  # never probed: status to write
    steady = assess(first.changed, {"a": up}, policy, NOW)
    assert steady.changed == [] and steady.transitions == []
    down = MemberObservation(name="a", reachable=False, error="refused")
    once = assess(first.changed, {"a": down}, policy, NOW)
    assert once.members["a"].health.health is Health.SUSPECT
    assert once.members["a"].health.placeable and not once.members["a"].reachable
    twice = assess(once.changed, {"a": down}, policy, NOW)
    assert twice.members["a"].health == HealthState(health=Health.UNHEALTHY, consecutive_failures=2)
    assert twice.transitions == ["member a: Suspect -> Unhealthy (refused)"]
    assert twice.changed[0].status.nodes_ready == 3  # an unreachable member keeps what was seen
    assert twice.changed[0].status.allocatable is not None
    assert assess([member("b")], {}, policy, NOW).members["b"].reachable is False


# --- federated objects ------------------------------------------------------------------------


def _uses(secret: str, config: str) -> FederatedDeployment:
    """``fd()`` whose pods read a Secret and a ConfigMap."""
    workload = fd()
    pod = workload.spec.template["spec"]["template"]["spec"]
    pod["containers"][0]["envFrom"] = [{"secretRef": {"name": secret}}]
    pod["volumes"] = [{"name": "c", "configMap": {"name": config}}]
    return workload


def test_dependencies_follow_the_plan_and_secrets_only_where_joined() -> None:
    workload = _uses("web-secret", "web-config")
    plan = WorkloadPlan(key="shop/web", replicas={"eu": 2, "us": 1, "us2": 0})
    objects = [
        federated("Secret", "web-secret", body={"stringData": {"p": "x"}}),
        federated("ConfigMap", "web-config"),
    ]
    members = {m: MemberView(name=m) for m in MEMBERS}
    placed = plan_objects(
        objects, [], [workload], {"shop/web": plan}, members, {"eu": ["shop"]}, "prod"
    )
    on = {m: [d.source for d in w.desired] for m, w in placed.work.items()}
    assert on == {
        "eu": ["shop/web-config", "shop/web-secret"],
        "us": ["shop/web-config"],
        "us2": [],
    }
    assert list(placed.refused) == ["shop/web-secret"]
    assert "rejoin us with namespaces including shop" in placed.refused["shop/web-secret"]["us"]
    assert all(w.kinds == [("v1", "ConfigMap"), ("v1", "Secret")] for w in placed.work.values())
    assert "web-secret" in placed.graph.markdown() and "p" not in placed.graph.markdown().split()


def test_an_override_that_does_not_apply_holds_the_object_everywhere() -> None:
    bad = federated(
        "ConfigMap",
        "cfg",
        placement={},
        overrides=[{"clusterName": "us", "jsonPatch": [{"op": "remove", "path": "/data/nope"}]}],
    )
    members = {m: MemberView(name=m) for m in MEMBERS}
    placed = plan_objects([bad], ["shop/broken"], [], {}, members, {}, "prod")
    assert "override for us" in placed.errors["shop/cfg"]
    assert all(not w.desired for w in placed.work.values())
    assert set(placed.work["eu"].hold) == {"shop/cfg", "shop/broken"}
    changed = object_statuses([bad], placed, [], unreachable=[], failed_members={})
    assert changed[0].status.conditions[0].reason == "Invalid"


def test_a_claim_that_stops_being_placed_is_kept_and_goes_with_its_object() -> None:
    claim = ObjectKey(group="", kind="PersistentVolumeClaim", namespace="shop", name="data")
    config = ObjectKey(group="", kind="ConfigMap", namespace="shop", name="cfg")
    passed = MemberPass(
        member="eu",
        remove=[
            Step(key=claim, source="shop/data", outcome=Outcome.REMOVE),
            Step(key=config, source="shop/cfg", outcome=Outcome.REMOVE),
        ],
    )
    assert [s.key for s in claims_kept(passed, []).remove] == [config]
    assert [s.key for s in claims_kept(passed, ["shop/data"]).remove] == [claim, config]


def test_statuses_keep_applied_and_a_deletion_waits_for_unreachable_members() -> None:
    cfg = federated("ConfigMap", "cfg", placement={})
    members = {m: MemberView(name=m, reachable=m != "us2") for m in MEMBERS}
    placed = plan_objects([cfg], [], [], {}, members, {}, "prod")
    step = Step(
        key=ObjectKey(group="", kind="ConfigMap", namespace="shop", name="cfg"),
        source="shop/cfg",
        outcome=Outcome.UNCHANGED,
    )
    results = [
        MemberPropagation(member="eu", passed=MemberPass(member="eu", kept=[step])),
        MemberPropagation(member="us", passed=MemberPass(member="us", kept=[step])),
    ]
    applied = FederatedObjectStatus(
        clusters=[MemberObjectStatus(name="eu", state=MemberState.APPLIED)]
    )
    cfg = cfg.model_copy(update={"status": applied})
    (changed,) = object_statuses([cfg], placed, results, unreachable=["us2"], failed_members={})
    assert [(c.name, c.state) for c in changed.status.clusters] == [
        ("eu", MemberState.APPLIED),  # as desired since the last write: no status churn
        ("us", MemberState.UNCHANGED),
        ("us2", MemberState.UNREACHABLE),
    ]
    gone = changed.model_copy(update={"deleting": True, "finalizers": [FINALIZER]})
    placed = plan_objects([gone], [], [], {}, members, {}, "prod")
    (held,) = object_statuses([gone], placed, [], unreachable=["us2"], failed_members={})
    assert (
        held.status.conditions[0].type == "Deleting" and "us2" in held.status.conditions[0].message
    )
    assert (
        objects_to_release([held], placed, cleaned=True, failed_sources=[], failed_members=[]) == []
    )
    members["us2"] = MemberView(name="us2")
    placed = plan_objects([held], [], [], {}, members, {}, "prod")
    assert objects_to_release(
        [held], placed, cleaned=True, failed_sources=[], failed_members=[]
    ) == [held]
    assert (
        objects_to_release([held], placed, cleaned=False, failed_sources=[], failed_members=[])
        == []
    )


@pytest.mark.parametrize(
    "patch",
    [
        {"metadata": {"namespace": "kube-system"}},  # into another namespace of the member
        {"metadata": {"name": "coredns"}},  # onto another workload
        {"kind": "DaemonSet"},
        {"apiVersion": "apps/v1beta1"},
        {"metadata": None},
    ],
)
def test_an_override_that_changes_the_workloads_identity_is_refused_and_nothing_written(
    patch: dict[str, Any],
) -> None:
    workload = fd()
    workload.spec.overrides[1].patch = patch
    with pytest.raises(InvalidRequest, match="an override for us changes the workload's"):
        member_deployment(workload, "us", 2, "prod")
    plan = plan_workload(workload, views({}))
    assert plan.error is not None and "shop/web" in plan.error and not plan.replicas
    assert write_plan([workload], {"shop/web": plan}, views({}), "prod").ups == {}


def test_an_override_cannot_take_away_what_marks_the_copy_as_ours() -> None:
    workload = fd()
    workload.spec.overrides[1].patch = {"metadata": {"labels": None, "annotations": None}}
    labels = member_deployment(workload, "us", 2, "prod")["metadata"]["labels"]
    assert (
        labels["fleetflow.io/federation"] == "prod"
        and labels["fleetflow.io/federated-deployment"] == "web"
    )
