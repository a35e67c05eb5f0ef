"""Where a migration goes, how its copy is paced and checked, and how rebalance holds the
workload meanwhile. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.capacity import Resources
from fleetflow.errors import InvalidRequest, MigrationRefused, UnknownName
from fleetflow.federated import FederatedDeployment
from fleetflow.migration import (
    GB,
    MB,
    Candidate,
    Link,
    RegionMatrix,
    choose_target,
    claim_manifests,
    claim_names,
    claim_volumes,
    decide_migration,
    foreign_claims,
    mismatches,
    precopy_done,
    predicted_sync,
    throughput,
)
from fleetflow.objects import FederatedObjects
from fleetflow.operations import Operation, OperationStatus, Step, rolled_back
from fleetflow.probes import Assessment
from fleetflow.rebalance import HostView, MemberView, Observed, plan_workload
from fleetflow.registry import MemberCluster
from fleetflow.rsync import Pass
from fleetflow.scheduling import Taint
from fleetflow.snapshot import Snapshot
from fleetflow.writes import write_plan

MATRIX = RegionMatrix(
    links=[Link(source="us", target="eu", cost_per_gb=0.05, mbps=50)],
    residency={"us": ["us"], "eu": ["eu"]},
)


def db(
    replicas: int = 1,
    *,
    data: dict[str, Any] | None = None,
    volumes: tuple[str, ...] = ("data", "logs"),
    kind: str = "StatefulSet",
    annotations: dict[str, str] | None = None,
    clusters: list[str] | None = None,
    placement: dict[str, Any] | None = None,
) -> FederatedDeployment:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "kind": kind,
        "template": {
            "metadata": {"labels": {"app": "db"}},
            "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "serviceName": "db",
                "template": {
                    "spec": {
                        "containers": [{"name": "db", "resources": {"requests": {"cpu": "1"}}}]
                    }
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": v, "labels": {"tier": "db"}},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "2Gi"}},
                        },
                    }
                    for v in volumes
                ],
            },
        },
        "placement": {"clusters": clusters or ["us1"], **(placement or {})},
    }
    if data is not None:
        spec["data"] = data
    return FederatedDeployment.from_object(
        {
            "metadata": {"name": "db", "namespace": "shop", "annotations": annotations or {}},
            "spec": spec,
        }
    )


SOURCE = Candidate(name="us1", region="us", room=4)


def members(**overrides: dict[str, Any]) -> list[Candidate]:
    found = [
        SOURCE,
        Candidate(name="us2", region="us", room=4),
        Candidate(name="eu1", region="eu", room=4),
    ]
    return [c.model_copy(update=overrides.get(c.name, {})) for c in found]


def test_the_cheapest_member_that_fits_is_chosen_and_the_table_explains_every_one() -> None:
    choice = choose_target(db(), SOURCE, members(), MATRIX, 1)
    assert choice.target == "us2"  # within the region: free and fast
    assert [r.member for r in choice.rows] == ["us2", "eu1"]  # the source is not a candidate
    eu = choice.rows[1]
    assert eu.move_bytes == 2 * 2 * 1024**3  # two claims of 2Gi each
    assert eu.move_cost == pytest.approx(eu.move_bytes / GB * 0.05)
    assert eu.transfer_seconds == pytest.approx(eu.move_bytes / MB / 50)
    assert "<- target" in choice.lines()[0] and "| us2 | us |" in choice.markdown()
    measured = choose_target(db(), SOURCE, members(), MATRIX, 1, used=10 * MB)
    assert measured.rows[1].move_bytes == 10 * MB  # what the claims hold, once measured


def test_the_data_it_reads_pulls_it_to_its_region_unless_residency_keeps_it() -> None:
    reads_eu = {"datasets": [{"name": "events", "region": "eu", "sizeGB": 500}]}
    choice = choose_target(db(data=reads_eu), SOURCE, members(), MATRIX, 1)
    assert choice.target == "eu1"
    us2 = next(r for r in choice.rows if r.member == "us2")
    assert us2.remote_read_gb == 500 and us2.read_cost == pytest.approx(500 * 0.05)

    kept = choose_target(db(data={**reads_eu, "residency": "us"}), SOURCE, members(), MATRIX, 1)
    assert kept.target == "us2"
    eu1 = next(r for r in kept.rows if r.member == "eu1")
    assert eu1.excluded == "region eu: residency 'us' keeps the data in us"
    with pytest.raises(MigrationRefused, match="cannot move to eu1: region eu: residency 'us'"):
        choose_target(db(data={"residency": "us"}), SOURCE, members(), MATRIX, 1, named="eu1")


def test_members_that_cannot_take_it_are_excluded_each_with_its_reason() -> None:
    none_fit = members(us2={"placeable": False}, eu1={"room": 0, "fenced": False, "region": "eu"})
    with pytest.raises(MigrationRefused) as refused:
        choose_target(db(), SOURCE, none_fit, MATRIX, 1)
    assert str(refused.value) == (
        "no member can take shop/db: us2: not healthy; eu1: room for 0 of 1 replicas"
    )
    fenced = choose_target(db(), SOURCE, members(us2={"fenced": True}), MATRIX, 1)
    assert fenced.target == "eu1"
    assert fenced.rows[-1].excluded == "fenced (a failover evacuated it)"


def test_bad_names_and_rules_are_refused_before_anything() -> None:
    with pytest.raises(InvalidRequest, match="already runs on us1"):
        choose_target(db(), SOURCE, members(), MATRIX, 1, named="us1")
    with pytest.raises(InvalidRequest, match="no member 'mars'"):
        choose_target(db(), SOURCE, members(), MATRIX, 1, named="mars")
    with pytest.raises(InvalidRequest, match="residency 'asia' is not a rule"):
        choose_target(db(data={"residency": "asia"}), SOURCE, members(), MATRIX, 1)


@given(
    rooms=st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=2, max_size=6),
    regions=st.lists(st.sampled_from(["us", "eu", "ap", None]), min_size=6, max_size=6),
    healthy=st.lists(st.booleans(), min_size=6, max_size=6),
    tainted=st.lists(st.booleans(), min_size=6, max_size=6),
    replicas=st.integers(1, 4),
)
def test_the_target_always_fits_and_costs_no_more_than_any_that_fits(
    rooms: list[int | None],
    regions: list[str | None],
    healthy: list[bool],
    tainted: list[bool],
    replicas: int,
) -> None:
    batch = [Taint.parse("dedicated=batch:NoSchedule")]
    candidates = [SOURCE] + [
        Candidate(
            name=f"m{i}",
            region=regions[i],
            room=room,
            placeable=healthy[i],
            taints=batch if tainted[i] else [],
        )
        for i, room in enumerate(rooms)
    ]
    try:
        choice = choose_target(db(replicas), SOURCE, candidates, MATRIX, replicas)
    except MigrationRefused as exc:
        assert all(f"m{i}:" in str(exc) for i in range(len(rooms)))
        return
    assert len(choice.rows) == len(rooms)
    chosen = [r for r in choice.rows if r.chosen]
    assert len(chosen) == 1 and chosen[0].excluded is None and chosen[0].member == choice.target
    assert all(chosen[0].cost <= r.cost for r in choice.rows if r.excluded is None)
    for row in choice.rows:
        i = int(row.member[1:])
        room = rooms[i]
        fits = healthy[i] and not tainted[i] and (room is None or room >= replicas)
        assert (row.excluded is None) == fits


def test_the_claims_are_the_names_its_pods_adopt_and_only_a_statefulset_with_volumes_moves() -> (
    None
):
    assert claim_names(db(2), 2) == ["data-db-0", "data-db-1", "logs-db-0", "logs-db-1"]
    claims = claim_manifests(db(1), 1, "prod")
    assert [c["metadata"]["name"] for c in claims] == ["data-db-0", "logs-db-0"]
    assert claims[0]["metadata"]["labels"]["tier"] == "db"
    assert claims[0]["metadata"]["labels"]["fleetflow.io/federation"] == "prod"
    assert claims[0]["spec"]["resources"] == {"requests": {"storage": "2Gi"}}
    assert [v.requested for v in claim_volumes(db())] == [2 * 1024**3] * 2


def test_claims_on_the_target_that_are_not_ours_are_refused_and_ours_are_taken() -> None:
    wanted = claim_manifests(db(1), 1, "prod")
    assert foreign_claims({}, wanted, "eu1") is None
    ours = {c["metadata"]["name"]: c for c in wanted}  # a resumed run finds its own claims
    assert foreign_claims(ours, wanted, "eu1") is None
    stranger = {"metadata": {"name": "logs-db-0", "labels": {"tier": "db"}}}
    refusal = foreign_claims({"logs-db-0": stranger}, wanted, "eu1")
    assert refusal is not None and refusal.startswith("eu1 already has claim(s) logs-db-0 in ")
    other = claim_manifests(db(1), 1, "staging")  # another federation's copy of the same name
    assert foreign_claims({c["metadata"]["name"]: c for c in other}, wanted, "eu1") is not None


def snapshot(
    workload: FederatedDeployment,
    running: dict[str, int],
    taints: dict[str, list[Taint]] | None = None,
) -> Snapshot:
    regions = {"us1": "us", "us2": "us", "eu1": "eu"}
    registry = [
        MemberCluster.new(
            "prod",
            "ff",
            n,
            api_url="https://x",
            credentials_block=n,
            service_account="sa",
            region=r,
        )
        for n, r in regions.items()
    ]
    views = {
        n: MemberView(
            name=n,
            free=Resources(cpu=8000, memory=8 * 1024**3, pods=100),
            deployments={"shop/db": Observed(replicas=running[n])} if n in running else {},
            taints=(taints or {}).get(n, []),
        )
        for n in regions
    }
    view = HostView(
        workloads=[workload],
        objects=FederatedObjects(),
        unassigned=[],
        members=registry,
        watch_lease=None,
        endpoints={},
    )
    return Snapshot(view=view, found=Assessment(members=views), watched=False)


def test_a_migration_is_decided_from_one_look_or_resumed_from_its_record() -> None:
    plan = decide_migration(snapshot(db(), {"us1": 1}), "shop/db", MATRIX, named="eu1")
    assert (plan.source, plan.target, plan.claims) == ("us1", "eu1", ["data-db-0", "logs-db-0"])
    assert plan.operation_name == "migrate-shop-db" and plan.clusters == ["us1"]
    # Resumed after the source was stopped: the record, not the members, says where.
    resumed = decide_migration(
        snapshot(db(), {"us1": 0}), "shop/db", MATRIX, named=None, record=plan.parameters()
    )
    assert (resumed.source, resumed.target, resumed.choice) == ("us1", "eu1", None)
    with pytest.raises(UnknownName, match="no FederatedDeployment shop/nope"):
        decide_migration(snapshot(db(), {"us1": 1}), "shop/nope", MATRIX, named=None)
    with pytest.raises(InvalidRequest, match="runs on eu1, us1: migrate moves a workload"):
        decide_migration(snapshot(db(), {"us1": 1, "eu1": 1}), "shop/db", MATRIX, named=None)
    with pytest.raises(InvalidRequest, match="is a Deployment"):
        decide_migration(snapshot(db(kind="Deployment"), {"us1": 1}), "shop/db", MATRIX, named=None)
    with pytest.raises(InvalidRequest, match="declares no volumes"):
        decide_migration(snapshot(db(volumes=()), {"us1": 1}), "shop/db", MATRIX, named=None)


def test_a_member_whose_taint_the_workload_does_not_tolerate_is_no_target() -> None:
    """Seen on the demo: the cheapest member carried ``dedicated=batch:NoSchedule``; the
    migration copied, stopped the source, and only then found no member could take a replica."""
    batch = {"us2": [Taint.parse("dedicated=batch:NoSchedule")]}
    plan = decide_migration(snapshot(db(), {"us1": 1}, batch), "shop/db", MATRIX, named=None)
    assert plan.target == "eu1"  # dearer, but us2 (free, same region) would never run it
    assert plan.choice is not None
    us2 = next(r for r in plan.choice.rows if r.member == "us2")
    assert us2.excluded == (
        "taint dedicated=batch:NoSchedule not tolerated (add a toleration to spec.placement)"
    )
    with pytest.raises(MigrationRefused, match="cannot move to us2: taint dedicated=batch"):
        decide_migration(snapshot(db(), {"us1": 1}, batch), "shop/db", MATRIX, named="us2")
    tolerant = db(placement={"tolerations": [{"key": "dedicated", "operator": "Exists"}]})
    plan = decide_migration(snapshot(tolerant, {"us1": 1}, batch), "shop/db", MATRIX, named=None)
    assert plan.target == "us2"
    hard = {"us2": [Taint.parse("maintenance:NoExecute")]}
    plan = decide_migration(snapshot(tolerant, {"us1": 1}, hard), "shop/db", MATRIX, named=None)
    assert plan.target == "eu1"  # its toleration is for another key


def test_a_rule_the_target_alone_cannot_meet_is_refused_before_anything_moves() -> None:
    """The table scores health, room, residency and taints; the rest of a workload's rules (a
    spread here) are checked with the scheduler the cut-over uses, before the source stops."""
    spread = db(placement={"spreadConstraints": [{"spreadBy": "cluster", "minGroups": 2}]})
    with pytest.raises(MigrationRefused) as refused:
        decide_migration(snapshot(spread, {"us1": 1}), "shop/db", MATRIX, named=None)
    assert str(refused.value) == (
        "shop/db: spread by cluster needs at least 2, but its members span only 1 (us2): lower "
        "minGroups or add members: migrate sets placement.clusters to us2 alone"
    )


def test_pre_copy_stops_when_a_round_moves_little_or_at_the_limit() -> None:
    assert not precopy_done([], 100, 5)
    assert not precopy_done([Pass(bytes=1000)], 100, 5)
    assert precopy_done([Pass(bytes=1000), Pass(bytes=100)], 100, 5)
    assert precopy_done([Pass(bytes=1000)] * 5, 100, 5)


def test_the_final_sync_is_predicted_from_what_changed_at_the_measured_rate() -> None:
    rounds = [Pass(bytes=200 * MB, seconds=2), Pass(bytes=10, seconds=0.5)]
    assert throughput(rounds) == 100 * MB  # the tiny round says nothing about speed
    assert predicted_sync(50 * MB, 0.5, throughput(rounds), MATRIX.between("us", "eu")) == 1.0
    # Before anything was measured, the link's nominal bandwidth.
    assert predicted_sync(50 * MB, 0, None, MATRIX.between("us", "eu")) == 1.0


def test_manifests_compare_by_path_and_content() -> None:
    same = mismatches({"a": "1", "b": "2"}, {"a": "1", "b": "2"})
    assert not same
    wrong = mismatches({"a": "1", "b": "2", "c": "3"}, {"a": "1", "b": "x", "d": "4"})
    assert (wrong.missing, wrong.extra, wrong.differ) == (["c"], ["d"], ["b"])
    assert wrong.summary() == (
        "missing on the target: 1 (c); only on the target: 1 (d); different content: 1 (b)"
    )


def test_a_held_workload_is_left_as_it_runs_and_its_needs_stay() -> None:
    held = db(annotations={"fleetflow.io/migration": "migrate-shop-db"}, clusters=["us1"])
    held = held.model_copy(update={"spec": held.spec.model_copy(update={"replicas": 3})})
    views = {n: MemberView(name=n) for n in ("us1", "us2", "eu1")}
    views["us1"].deployments["shop/db"] = Observed(replicas=0)  # quiesced
    plan = plan_workload(held, views)
    assert plan.held and plan.replicas == {"us1": 0} and plan.remove_from == []
    writes = write_plan([held], {"shop/db": plan}, views, "prod")
    assert writes.ups == {} and writes.downs == {}


def test_a_rolled_back_record_keeps_only_what_stays_valid() -> None:
    op = Operation(name="m", namespace="ns", procedure="migrate", federation="prod")
    steps = [Step(name=n, at="t") for n in ("provisioned", "pre-copied", "quiesced")]
    op = op.model_copy(update={"status": op.status.model_copy(update={"steps": steps})})
    kept = rolled_back(op, ("provisioned", "pre-copied"))
    assert [s.name for s in kept.status.steps] == ["provisioned", "pre-copied"]
    # A new record over a finished one leaves its result out rather than apply {} (null).
    assert "result" not in OperationStatus().wire()
    assert OperationStatus(result={"files": 3}).wire()["result"] == {"files": 3}
