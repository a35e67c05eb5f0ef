"""One propagation pass without clusters: placement, order, the decision per object, the
member's pass, StatefulSet claims."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.dependencies import Ref
from fleetflow.federated import ANNOTATION_HASH, ANNOTATION_ORPHAN, member_deployment, spec_hash
from fleetflow.objects import (
    LABEL_OBJECT,
    FederatedObject,
    FederatedObjectStatus,
    MemberObjectStatus,
    MemberState,
    member_object,
)
from fleetflow.propagation import (
    RETAIN_CLAIMS,
    Desired,
    ObjectKey,
    Outcome,
    WorkloadDeps,
    apply_order,
    contained,
    decide,
    deletion_blocked_by,
    dependency_graph,
    member_pass,
    member_statuses,
    member_workload,
    owner_of,
    placed_on,
    removal_order,
    retain_claims,
    to_hold,
    workload_deps,
)
from fleetflow.rebalance import MemberView, WorkloadPlan
from tests.unit.test_rebalance_pure import fd

MEMBERS = ("eu", "us", "us2")


def views() -> dict[str, MemberView]:
    labels = {"us": {"region": "us"}, "us2": {"region": "us"}, "eu": {"region": "eu"}}
    return {n: MemberView(name=n, labels=tags) for n, tags in labels.items()}


def federated(
    kind: str = "ConfigMap",
    target: str = "web-config",
    *,
    name: str | None = None,
    api_version: str = "v1",
    body: dict[str, Any] | None = None,
    deleting: bool = False,
    orphan: bool = False,
    **spec: Any,
) -> FederatedObject:
    template = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": target},
        **(body if body is not None else {"data": {"a": "1"}}),
    }
    meta: dict[str, Any] = {"name": name or target, "namespace": "shop"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    if orphan:
        meta["annotations"] = {ANNOTATION_ORPHAN: "true"}
    return FederatedObject.from_object({"metadata": meta, "spec": {"template": template, **spec}})


def served(manifest: dict[str, Any]) -> dict[str, Any]:
    """The object as a member returns it after applying ``manifest``: server fields, status,
    defaults and other managers' labels added, quantities rewritten."""
    live = copy.deepcopy(manifest)
    meta = live["metadata"]
    meta.update(uid="u-1", resourceVersion="42", creationTimestamp="2026-01-01T00:00:00Z")
    meta["managedFields"] = [{"manager": "fleetflow"}]
    meta["labels"]["added-by"] = "a-webhook"
    meta["annotations"]["kubectl.kubernetes.io/restartedAt"] = "now"
    live["status"] = {"observed": True}
    if "spec" in live:
        live["spec"]["defaulted"] = "by the server"
    return live


# --- decide ----------------------------------------------------------------------------------


def test_decide_covers_every_outcome() -> None:
    desired = member_object(federated(), "eu", "prod")
    live = served(desired)
    owner = owner_of(desired)
    assert decide(desired, None) is Outcome.CREATE
    assert decide(desired, live) is Outcome.UNCHANGED
    edited = copy.deepcopy(live)
    edited["data"]["a"] = "by hand"
    assert decide(desired, edited) is Outcome.DRIFT
    changed = member_object(federated(body={"data": {"a": "2"}}), "eu", "prod")
    assert decide(changed, live) is Outcome.UPDATE
    unmanaged = {k: v for k, v in desired.items() if k != "metadata"}
    unmanaged["metadata"] = {"name": "web-config", "namespace": "shop", "labels": {"x": "y"}}
    assert decide(desired, unmanaged) is Outcome.CONFLICT
    assert decide(desired, unmanaged, adopt=True) is Outcome.ADOPT
    assert decide(None, live, owner=owner) is Outcome.REMOVE
    assert decide(None, live, owner=owner, orphan=True) is Outcome.NOTHING
    assert decide(None, unmanaged, owner=owner) is Outcome.NOTHING  # never delete others'
    assert decide(None, None, owner=owner) is Outcome.NOTHING
    with pytest.raises(ValueError, match="owner"):
        decide(None, live)
    assert {o for o in Outcome if o.writes} == {
        Outcome.CREATE,
        Outcome.UPDATE,
        Outcome.DRIFT,
        Outcome.ADOPT,
        Outcome.REMOVE,
    }


def test_another_federation_or_source_is_a_conflict_even_with_adopt() -> None:
    desired = member_object(federated(), "eu", "prod")
    other_federation = served(member_object(federated(), "eu", "staging"))
    other_source = served(member_object(federated(name="cfg-2"), "eu", "prod"))
    for live in (other_federation, other_source):
        assert decide(desired, live) is Outcome.CONFLICT
        assert decide(desired, live, adopt=True) is Outcome.CONFLICT
        assert decide(None, live, owner=owner_of(desired)) is Outcome.NOTHING
    deployment = served(member_deployment(fd(), "eu", 2, "prod"))
    assert decide(member_deployment(fd(), "eu", 2, "prod"), deployment) is Outcome.UNCHANGED


def test_an_adopted_object_is_unchanged_on_the_next_run() -> None:
    desired = member_object(federated(adopt=True), "eu", "prod")
    assert decide(desired, served(desired), adopt=True) is Outcome.UNCHANGED


def test_contained_tolerates_server_rewrites_but_not_edits() -> None:
    desired = {"spec": {"resources": {"requests": {"cpu": "1000m", "memory": "1024Mi"}}}}
    assert contained(desired, {"spec": {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}})
    assert not contained(
        desired, {"spec": {"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}}
    )
    assert not contained({"data": {"n": "1000m"}}, {"data": {"n": "1"}})  # only quantities
    assert contained({"a": {}, "b": [], "c": None}, {})  # the server drops empty fields
    assert not contained({"a": {"x": 1}}, {})
    assert not contained({"a": [1, 2]}, {"a": [1, 2, 3]})
    assert contained({"a": [{"x": 1}]}, {"a": [{"x": 1, "y": 2}]})
    assert not contained({"a": True}, {"a": 1})
    assert contained({"emptyDir": {"sizeLimit": "1Gi"}}, {"emptyDir": {"sizeLimit": "1024Mi"}})


configmaps = st.fixed_dictionaries(
    {
        "data": st.dictionaries(st.text("abc", min_size=1, max_size=3), st.text(max_size=4)),
        "labels": st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["x", "y"])),
    }
)


@given(cm=configmaps, member=st.sampled_from(MEMBERS), adopt=st.booleans())
def test_decide_never_writes_what_is_already_applied(
    cm: dict[str, Any], member: str, adopt: bool
) -> None:
    template_body = {"data": cm["data"]}
    obj = federated(body=template_body, adopt=adopt)
    obj.spec.template["metadata"]["labels"] = cm["labels"]
    desired = member_object(obj, member, "prod")
    outcome = decide(desired, served(desired), adopt=adopt)
    assert outcome is Outcome.UNCHANGED and not outcome.writes
    passed = member_pass(
        member, "prod", [Desired(source=obj.key, manifest=desired)], [served(desired)]
    )
    assert passed.writes == 0 and passed.kept[0].state is MemberState.UNCHANGED


# --- order -----------------------------------------------------------------------------------

KINDS = [
    ("networking.k8s.io/v1", "Ingress"),
    ("batch/v1", "Job"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "Deployment"),
    ("example.com/v1", "Widget"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "Service"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "ServiceAccount"),
    ("example.com/v1", "Service"),  # a custom "Service" is not the core one
]


def manifest(api_version: str, kind: str, name: str = "x") -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "s"}}


def test_apply_order_puts_dependencies_first_and_ingress_last() -> None:
    ordered = [m["kind"] for m in apply_order(manifest(v, k) for v, k in KINDS)]
    assert ordered[:5] == [
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Service",
    ]
    assert set(ordered[5:8]) == {"RoleBinding", "Widget", "Service"}
    assert ordered[8:] == ["Deployment", "StatefulSet", "Job", "Ingress"]


@given(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from("abc")), max_size=12))
def test_removal_order_is_the_apply_order_reversed(
    items: list[tuple[tuple[str, str], str]],
) -> None:
    manifests = [manifest(v, k, name) for (v, k), name in items]
    applied, removed = apply_order(manifests), removal_order(manifests)
    assert removed == applied[::-1]
    ranks = [ObjectKey.of(m).rank for m in applied]
    assert ranks == sorted(ranks)


# --- placement -------------------------------------------------------------------------------

SECRET = {"type": "Opaque", "data": {"password": "c2VjcmV0"}}


def test_own_placement_uses_the_planners_selection_and_its_errors() -> None:
    objects = [
        federated(placement={"clusterSelector": {"matchLabels": {"region": "us"}}}),
        federated("ConfigMap", "b", placement={"clusters": ["eu"]}),
        federated("ConfigMap", "c", placement={"clusters": ["mars"]}),
    ]
    placements = placed_on(objects, [], views())
    assert placements.objects["shop/web-config"].members == ["us", "us2"]
    assert placements.objects["shop/b"].members == ["eu"]
    assert placements.objects["shop/c"].members == []
    assert "unknown cluster(s) mars" in (placements.objects["shop/c"].error or "")
    assert placements.on("eu") == ["shop/b"]
    assert to_hold(objects, placements) == {"shop/c"}


def test_without_placement_an_object_follows_the_workloads_that_use_it() -> None:
    objects = [
        federated(),
        federated("Secret", "db", body=SECRET),
        federated("ConfigMap", "unused"),
        federated("ServiceAccount", "web-sa", body={}, deleting=True),
    ]
    workloads = [
        WorkloadDeps(
            key="shop/web",
            refs=[
                Ref(kind="ConfigMap", name="web-config"),
                Ref(kind="Secret", name="db"),
                Ref(kind="Secret", name="nowhere"),
                Ref(kind="ServiceAccount", name="web-sa"),
            ],
            replicas={"eu": 2, "us": 1, "us2": 0},
        ),
        WorkloadDeps(key="shop/api", refs=[Ref(kind="Secret", name="db")], replicas={"us2": 1}),
        WorkloadDeps(
            key="other/web", refs=[Ref(kind="ConfigMap", name="web-config")], replicas={"us2": 3}
        ),
    ]
    placements = placed_on(objects, workloads, views())
    assert placements.objects["shop/web-config"].members == ["eu", "us"]
    assert placements.objects["shop/web-config"].follows == ["shop/web"]
    assert placements.objects["shop/db"].members == ["eu", "us", "us2"]
    assert placements.objects["shop/unused"].members == []
    assert placements.objects["shop/web-sa"].members == []
    lines = [m.line() for m in placements.missing]
    assert lines == [
        "other/web needs ConfigMap/web-config on us2: no FederatedObject provides it",
        "shop/web needs Secret/nowhere on eu, us: no FederatedObject provides it",
        "shop/web needs ServiceAccount/web-sa on eu, us: shop/web-sa is being deleted",
    ]


def test_own_placement_narrower_than_the_workload_and_a_duplicate_are_reported() -> None:
    objects = [
        federated(placement={"clusters": ["eu"]}),
        federated(name="zz-copy"),  # the same ConfigMap again
    ]
    workloads = [
        WorkloadDeps(
            key="shop/web",
            refs=[Ref(kind="ConfigMap", name="web-config")],
            replicas={"eu": 1, "us": 1},
        )
    ]
    placements = placed_on(objects, workloads, views())
    assert placements.objects["shop/zz-copy"].error == (
        "shop/zz-copy: targets ConfigMap web-config as shop/web-config does; "
        "one object has one source"
    )
    assert [m.line() for m in placements.missing] == [
        "shop/web needs ConfigMap/web-config on us: "
        "the placement of shop/web-config leaves them out"
    ]
    graph = dependency_graph(workloads, objects, placements)
    text = graph.markdown()
    assert "#### shop/web (Deployment) on eu, us" in text
    assert "| ConfigMap/web-config | shop/web-config | **missing** on us:" in text


workload_sets = st.lists(
    st.tuples(
        st.sets(st.sampled_from(["a", "b", "c", "d"])),
        st.dictionaries(st.sampled_from(MEMBERS), st.integers(0, 3)),
    ),
    max_size=5,
)


@given(workload_sets)
def test_dependencies_land_on_exactly_the_members_of_their_workloads(
    spec: list[tuple[set[str], dict[str, int]]],
) -> None:
    workloads = [
        WorkloadDeps(
            key=f"shop/w{i}",
            refs=[Ref(kind="ConfigMap", name=n) for n in sorted(names)],
            replicas=replicas,
        )
        for i, (names, replicas) in enumerate(spec)
    ]
    objects = [federated("ConfigMap", n) for n in "abcd"]
    placements = placed_on(objects, workloads, views())
    for n in "abcd":
        expected = sorted(
            {m for w in workloads if Ref(kind="ConfigMap", name=n) in w.refs for m in w.members}
        )
        assert placements.objects[f"shop/{n}"].members == expected
    assert placements.missing == []


def test_workload_deps_follow_the_plan_or_stay_where_the_workload_stays() -> None:
    workload = fd()
    workload.spec.template["spec"]["template"]["spec"]["volumes"] = [
        {"name": "c", "configMap": {"name": "web-config"}}
    ]
    planned = WorkloadPlan(key="shop/web", replicas={"eu": 2, "us": 0}, current={"us": 2})
    assert workload_deps(workload, planned).members == ["eu"]
    assert workload_deps(workload, planned).refs == [Ref(kind="ConfigMap", name="web-config")]
    broken = planned.model_copy(update={"error": "bad placement"})
    assert workload_deps(workload, broken).members == ["us"]
    deleting = planned.model_copy(update={"deleting": True})
    assert workload_deps(workload, deleting).members == []
    kept = workload.model_copy(update={"orphan": True})
    assert workload_deps(kept, deleting).members == ["us"]


def test_the_graph_shows_names_never_secret_data() -> None:
    objects = [federated("Secret", "db", body=SECRET)]
    workloads = [
        WorkloadDeps(key="shop/web", refs=[Ref(kind="Secret", name="db")], replicas={"eu": 1})
    ]
    text = dependency_graph(workloads, objects, placed_on(objects, workloads, views())).markdown()
    assert "| Secret/db | shop/db | ok |" in text
    assert "c2VjcmV0" not in text and "password" not in text
    assert (
        dependency_graph([], [], placed_on([], [], views())).markdown().startswith("No federated")
    )


# --- one member's pass -----------------------------------------------------------------------


def desire(obj: FederatedObject, member: str = "eu") -> Desired:
    return Desired(
        source=obj.key, manifest=member_object(obj, member, "prod"), adopt=obj.spec.adopt
    )


def test_a_first_pass_creates_in_dependency_order() -> None:
    objects = [
        federated("Ingress", "web", api_version="networking.k8s.io/v1", body={"spec": {}}),
        federated("Service", "web", body={"spec": {"ports": [{"port": 80}]}}),
        federated("ConfigMap", "web-config"),
        federated("Secret", "db", body=SECRET),
        federated("Widget", "w", api_version="example.com/v1", body={"spec": {}}),
    ]
    passed = member_pass("eu", "prod", [desire(o) for o in objects], [])
    assert [s.key.kind for s in passed.apply] == [
        "Secret",
        "ConfigMap",
        "Service",
        "Widget",
        "Ingress",
    ]
    assert all(s.outcome is Outcome.CREATE and s.manifest for s in passed.apply)
    assert all(s.state is MemberState.APPLIED for s in passed.apply)
    assert passed.writes == 5 and passed.remove == [] and passed.kept == []


def test_a_member_without_the_kind_is_reported_not_written() -> None:
    widget = federated("Widget", "w", api_version="example.com/v1", body={"spec": {}})
    cluster_scoped = federated("Gadget", "g", api_version="example.com/v1", body={"spec": {}})
    kinds = {("v1", "ConfigMap"): True, ("example.com/v1", "Gadget"): False}
    passed = member_pass(
        "us",
        "prod",
        [desire(widget, "us"), desire(cluster_scoped, "us"), desire(federated(), "us")],
        [],
        kinds=kinds,
    )
    assert [s.key.kind for s in passed.apply] == ["ConfigMap"]
    states = {s.key.kind: (s.state, s.message) for s in passed.kept}
    assert states["Widget"] == (MemberState.MISSING_KIND, "us does not serve example.com/v1 Widget")
    assert states["Gadget"] == (MemberState.CONFLICT, "Gadget is cluster-scoped on us")


def test_conflicts_are_left_alone_with_a_reason() -> None:
    mine = federated()
    unmanaged = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": "shop"},
        "data": {"theirs": "yes"},
    }
    passed = member_pass("eu", "prod", [desire(mine)], [unmanaged])
    assert passed.writes == 0
    assert passed.kept[0].state is MemberState.CONFLICT
    assert "fleetflow does not manage it (adopt to take it over)" in passed.kept[0].message
    adopted = member_pass("eu", "prod", [desire(federated(adopt=True))], [unmanaged])
    assert [s.outcome for s in adopted.apply] == [Outcome.ADOPT]
    other = served(member_object(federated(name="cfg-b"), "eu", "prod"))
    clash = member_pass("eu", "prod", [desire(mine)], [other])
    assert "belongs to another fleetflow source" in clash.kept[0].message
    assert f"{LABEL_OBJECT}=cfg-b" in clash.kept[0].message
    twice = member_pass("eu", "prod", [desire(mine), desire(federated(name="cfg-b"))], [])
    assert [s.outcome for s in twice.kept] == [Outcome.CONFLICT]
    assert "also wanted by shop/web-config" in twice.kept[0].message


def test_removals_go_in_reverse_order_and_only_for_our_own_objects() -> None:
    gone = [
        federated("ConfigMap", "old-config"),
        federated("Service", "old"),
        federated("Ingress", "old", api_version="networking.k8s.io/v1", body={"spec": {}}),
        federated("Secret", "kept", body=SECRET, orphan=True, deleting=True),
    ]
    live = [served(member_object(o, "eu", "prod")) for o in gone]
    live.append(served(member_object(federated("ConfigMap", "elsewhere"), "eu", "staging")))
    live.append(manifest("v1", "ConfigMap", "unmanaged"))
    live.append(served(member_deployment(fd(), "eu", 2, "prod")))  # a workload's, not ours here
    passed = member_pass("eu", "prod", [], live, hold=to_hold(gone, placed_on(gone, [], views())))
    assert [(s.key.kind, s.key.name) for s in passed.remove] == [
        ("Ingress", "old"),
        ("Service", "old"),
        ("ConfigMap", "old-config"),
    ]
    assert all(s.outcome is Outcome.REMOVE and s.manifest is None for s in passed.remove)
    assert passed.remove[0].source == "shop/old"


def test_a_pass_writes_only_what_changed() -> None:
    same, edited, changed = (
        federated("ConfigMap", "same"),
        federated("ConfigMap", "edited"),
        federated(),
    )
    live = [served(member_object(o, "eu", "prod")) for o in (same, edited, changed)]
    live[1]["data"]["a"] = "by hand"
    new_changed = federated(body={"data": {"a": "new"}})
    passed = member_pass("eu", "prod", [desire(same), desire(edited), desire(new_changed)], live)
    outcomes = {s.key.name: s.outcome for s in passed.apply + passed.kept}
    assert outcomes == {
        "same": Outcome.UNCHANGED,
        "edited": Outcome.DRIFT,
        "web-config": Outcome.UPDATE,
    }
    assert passed.writes == 2
    drift = next(s for s in passed.apply if s.outcome is Outcome.DRIFT)
    assert drift.state is MemberState.DRIFTED


# --- StatefulSets ----------------------------------------------------------------------------


def test_a_member_statefulset_always_retains_its_claims() -> None:
    workload = fd()
    workload.spec.template["spec"]["persistentVolumeClaimRetentionPolicy"] = {
        "whenScaled": "Delete",
        "whenDeleted": "Delete",
    }
    workload.spec.overrides[1].patch = {"spec": {"persistentVolumeClaimRetentionPolicy": None}}
    for cluster in MEMBERS:
        sts = member_workload("StatefulSet", workload, cluster, 2, "prod")
        assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 2
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == RETAIN_CLAIMS
        assert sts["metadata"]["annotations"][ANNOTATION_HASH] == spec_hash(sts)
    deployment = member_workload("Deployment", workload, "eu", 2, "prod")
    assert deployment == member_deployment(workload, "eu", 2, "prod")
    assert retain_claims(deployment) == deployment  # only StatefulSets
    assert "persistentVolumeClaimRetentionPolicy" not in retain_claims(
        manifest("v1", "StatefulSet")
    )


# --- status ----------------------------------------------------------------------------------


def test_member_statuses_per_object_with_failures_and_unreachable_members() -> None:
    cfg, widget = federated(placement={}), federated("Widget", "w", api_version="example.com/v1")
    placements = placed_on([cfg, widget], [], views())
    live_us = [served(member_object(cfg, "us", "prod"))]
    eu = member_pass(
        "eu", "prod", [desire(cfg), desire(widget)], [], kinds={("v1", "ConfigMap"): True}
    )
    us = member_pass("us", "prod", [desire(cfg, "us")], live_us)
    failed = {("eu", eu.apply[0].key): "cluster 'eu': admission webhook denied it"}
    statuses = member_statuses([eu, us], placements, unreachable=["us2"], failed=failed)
    table = {k: [(s.name, s.state.value, s.message) for s in v] for k, v in statuses.items()}
    assert table == {
        "shop/web-config": [
            ("eu", "Failed", "cluster 'eu': admission webhook denied it"),
            ("us", "Unchanged", ""),
            ("us2", "Unreachable", ""),
        ],
        "shop/w": [("eu", "MissingKind", "eu does not serve example.com/v1 Widget")],
    }


def test_a_deletion_waits_for_members_that_may_still_hold_the_object() -> None:
    status = FederatedObjectStatus(
        clusters=[
            MemberObjectStatus(name="eu", state=MemberState.APPLIED),
            MemberObjectStatus(name="us", state=MemberState.CONFLICT),  # never ours there
            MemberObjectStatus(name="us2", state=MemberState.UNREACHABLE),
        ]
    )
    deleting = federated(deleting=True).model_copy(update={"status": status})
    assert deletion_blocked_by(deleting, reachable=["us"]) == ["eu", "us2"]
    assert deletion_blocked_by(deleting, reachable=MEMBERS) == []
    orphaning = federated(deleting=True, orphan=True).model_copy(update={"status": status})
    assert deletion_blocked_by(orphaning, reachable=[]) == []
    assert deletion_blocked_by(federated().model_copy(update={"status": status}), []) == []
