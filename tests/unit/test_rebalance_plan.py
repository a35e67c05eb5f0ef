"""A rebalance decided in one pure step, and what the run learns fed back into it. Pure."""

from __future__ import annotations

from typing import Any

import pytest

from fleetflow.errors import PlacementError, UnknownName
from fleetflow.federated import ANNOTATION_HASH, Exposure
from fleetflow.models import RebalanceRequest
from fleetflow.objects import FederatedObjects
from fleetflow.probes import Assessment
from fleetflow.rebalance import HostView, Observed
from fleetflow.rebalance_plan import Acted, changed_under, decide_rebalance
from fleetflow.registry import MemberCluster
from fleetflow.resolve import Answer
from fleetflow.scheduling import Taint
from fleetflow.snapshot import Snapshot
from fleetflow.traffic import unanswered
from fleetflow.writes import Readiness
from tests.unit.test_rebalance_pure import fd, members


def snapshot(
    running: dict[str, int], digests: dict[str, str] | None = None, workload: Any = None
) -> Snapshot:
    views = members()
    for name, n in running.items():
        live = Observed(replicas=n, ready=n, spec_hash=(digests or {}).get(name, ""))
        views[name] = views[name].model_copy(update={"deployments": {"shop/web": live}})
    view = HostView(
        workloads=[workload or fd(6)],
        objects=FederatedObjects(),
        unassigned=[],
        members=[],
        watch_lease=None,
        endpoints={},
    )
    return Snapshot(view=view, found=Assessment(members=views), watched=False)


REQUEST = RebalanceRequest(federation="prod")


def test_the_plan_holds_every_write_before_the_first() -> None:
    plan = decide_rebalance(snapshot({"us": 6}), REQUEST, federation="prod", zone="z")
    assert sum(plan.plans["shop/web"].replicas.values()) == 6
    assert set(plan.writes.ups) == {"eu", "us2"}  # scale-ups first, everywhere they go
    assert set(plan.writes.downs) == {"us"}  # the scale-down after they are Ready
    # What must be Ready, and how many at least: the planned replicas there.
    planned = plan.plans["shop/web"].replicas
    assert plan.applied() == {m: {"shop/web": planned[m]} for m in ("eu", "us2")}
    assert all(planned[m] > 0 for m in ("eu", "us2"))
    assert [o.key for o in plan.protect] == ["shop/web"]  # the finalizer before anything


def test_scale_ups_not_ready_in_time_hold_the_second_phase_back() -> None:
    plan = decide_rebalance(snapshot({"us": 6}), REQUEST, federation="prod", zone="z")
    late = plan.with_readiness({"eu": Readiness(pending=["shop/web"])}, timeout=5)
    assert late.holds and late.downs(Acted()) == ({}, {})
    on_time = plan.with_readiness({"eu": Readiness(ready={"shop/web": 2})}, timeout=5)
    assert not on_time.holds and set(on_time.downs(Acted())[0]) == {"us"}


def test_a_run_that_finds_nothing_to_change_plans_no_write() -> None:
    even = {"us": 2, "us2": 2, "eu": 2}
    first = decide_rebalance(snapshot(even), REQUEST, federation="prod", zone="z")
    digests = {
        m: w.apply[0]["metadata"]["annotations"][ANNOTATION_HASH]
        for m, w in first.writes.ups.items()
    }
    settled = decide_rebalance(snapshot(even, digests), REQUEST, federation="prod", zone="z")
    assert settled.writes.ups == {} and settled.writes.downs == {}
    protected = settled.model_copy(update={"protect": []})  # the finalizer held already
    report = protected.report([], Acted(), Acted(), written=0)
    assert report.summary() == "rebalance prod: nothing to change"
    assert report.notes[0] == "1 workloads and 0 federated objects over 3 members"


def test_unknown_names_and_impossible_plans_are_errors() -> None:
    named = RebalanceRequest(federation="prod", name="nope")
    empty = snapshot({}).model_copy(
        update={"view": snapshot({}).view.model_copy(update={"workloads": []})}
    )
    with pytest.raises(UnknownName, match="no FederatedDeployment named 'nope'"):
        decide_rebalance(empty, named, federation="prod", zone="z")
    nowhere = snapshot({}, workload=fd(6, clusters=["mars"]))
    plan = decide_rebalance(nowhere, REQUEST, federation="prod", zone="z")
    workload_errors, _ = plan.errors()
    assert "unknown cluster(s) mars" in workload_errors[0]  # the run fails after the rest
    with pytest.raises(PlacementError):
        plan.raise_errors()
    plan.model_copy(update={"dry_run": True}).raise_errors()  # a dry run only says so


def test_a_run_filtered_by_name_writes_only_that_workload_and_plans_the_others_as_they_run() -> (
    None
):
    web, db = fd(6), fd(3).model_copy(update={"name": "db"})
    seen = snapshot({"us": 6}, workload=web)
    seen = seen.model_copy(update={"view": seen.view.model_copy(update={"workloads": [web, db]})})
    plan = decide_rebalance(
        seen, RebalanceRequest(federation="prod", name="db"), federation="prod", zone="z"
    )
    assert plan.plans["shop/web"].held == "outside this run's name and labels: left as it runs"
    assert plan.plans["shop/web"].replicas == {"us": 6}  # what follows it stays where it runs
    written = {m["metadata"]["name"] for w in plan.writes.ups.values() for m in w.apply}
    assert written == {"db"} and plan.writes.downs == {}
    assert [o.key for o in plan.protect] == ["shop/db"]
    with pytest.raises(UnknownName, match="no FederatedDeployment named 'nope'"):
        decide_rebalance(
            seen, RebalanceRequest(federation="prod", name="nope"), federation="prod", zone="z"
        )


def test_traffic_leaves_a_member_before_its_last_replicas_do() -> None:
    exposed = fd(6)
    exposed.spec.dns = Exposure(hostname="web")
    base = snapshot({"us": 2, "us2": 2, "eu": 2}, workload=exposed)
    addresses = {"us": "10.0.0.1", "us2": "10.0.0.2", "eu": "10.0.0.3"}
    entries = [
        MemberCluster.new("prod", "ns", n, api_url="https://x", credentials_block=n,
                          service_account="sa", ingress_address=a)
        for n, a in addresses.items()
    ]  # fmt: skip
    views = dict(base.found.members)
    views["eu"] = views["eu"].model_copy(update={"taints": [Taint.parse("m:NoExecute")]})
    drained = base.model_copy(
        update={
            "view": base.view.model_copy(update={"members": entries}),
            "found": Assessment(members=views),
        }
    )
    plan = decide_rebalance(drained, REQUEST, federation="prod", zone="z")
    assert plan.plans["shop/web"].replicas["eu"] == 0
    on_time = plan.with_readiness({"us": Readiness(ready={"shop/web": 3})}, timeout=5)
    (record,) = on_time.traffic()[0]
    assert record["spec"]["endpoints"][0]["targets"] == ["10.0.0.1", "10.0.0.2"]
    late = plan.with_readiness({"us": Readiness(pending=["shop/web"])}, timeout=5)
    (record,) = late.traffic()[0]
    assert "10.0.0.3" in record["spec"]["endpoints"][0]["targets"], "held back: eu still serves"


def test_scale_downs_wait_for_the_dns_server_to_answer_the_switch() -> None:
    expected = {"web.z": ["10.0.0.2", "10.0.0.1"], "api.z": []}
    right = {
        "web.z": Answer(name="web.z", targets=["10.0.0.1", "10.0.0.2"], rcode="NOERROR"),
        "api.z": Answer(name="api.z", targets=[], rcode="NXDOMAIN"),
    }
    assert unanswered(expected, right) == []
    stale = right | {"web.z": Answer(name="web.z", targets=["10.0.0.3"], rcode="NOERROR")}
    assert unanswered(expected, stale) == [
        "DNS web.z: answers 10.0.0.3, not yet 10.0.0.2, 10.0.0.1; scale-downs held back"
    ]
    assert unanswered(expected, {})[0].startswith("DNS api.z: answers nothing, not yet nothing")


def test_a_fence_a_taint_or_a_hold_that_changed_under_the_plan_stops_its_writes() -> None:
    def member(name: str, *, fenced: bool = False, taints: list[Taint] | None = None) -> Any:
        entry = MemberCluster.new(
            "prod", "ff", name, api_url="https://x", credentials_block="b", service_account="s"
        )
        spec = entry.spec.model_copy(update={"fenced": fenced or None, "taints": taints})
        return entry.model_copy(update={"spec": spec})

    view = HostView(
        workloads=[fd(6)],
        objects=FederatedObjects(),
        unassigned=[],
        members=[member("us"), member("eu")],
        watch_lease=None,
        endpoints={},
    )
    same = [member("us"), member("eu")]
    assert changed_under(view, same, [fd(6)]) == []
    held = fd(6).model_copy(update={"migration": "migrate-shop-web"})
    gone = Taint(key="maintenance", effect="NoExecute")
    assert changed_under(view, [member("us"), member("eu", fenced=True)], [held]) == [
        "eu fenced",
        "shop/web held by migrate-shop-web",
    ]
    assert changed_under(view, [member("us", taints=[gone]), member("eu")], [fd(7)]) == [
        "us's taints changed"  # a new replica count is not a hold: the plan's own business
    ]
    # A member or workload the run never read (joined, created meanwhile) is not its concern.
    assert changed_under(view, [*same, member("ap", fenced=True)], [fd(6)]) == []
