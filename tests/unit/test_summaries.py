"""The one line a run's final state carries: what happened, or what would have."""

from __future__ import annotations

from datetime import UTC, datetime

from fleetflow.drill import DrillMode, Objective, Verdict
from fleetflow.models import Action, Report, Verb
from fleetflow.watch import WatchReport


def _action(cluster: str, verb: Verb, name: str = "web") -> Action:
    return Action(cluster=cluster, kind="Deployment", name=name, namespace="shop", verb=verb)


def test_a_report_names_its_writes_and_where_and_ignores_what_it_kept() -> None:
    report = Report(
        procedure="rebalance demo",
        actions=[
            _action("us-east-1", Verb.UPDATE),
            _action("eu-west-1", Verb.CREATE),
            _action("eu-west-1", Verb.DELETE, "old"),
            _action("us-east-2", Verb.UNCHANGED),
        ],
    )
    assert report.summary() == (
        "rebalance demo: wrote 3 objects (1 create, 1 update, 1 delete) on eu-west-1, us-east-1"
    )
    dry = report.model_copy(update={"dry_run": True})
    assert dry.summary().startswith("rebalance demo: dry run, would write 3 objects")


def test_a_report_without_writes_says_so() -> None:
    kept = Report(procedure="join us-east-1", actions=[_action("us-east-1", Verb.UNCHANGED)])
    assert kept.summary() == "join us-east-1: nothing to change"
    assert Report(procedure="x", dry_run=True).summary() == "x: nothing to change (dry run)"


def test_a_verdict_says_pass_or_fail_with_each_objective() -> None:
    objectives = [
        Objective(name="detection", target="30 s", measured="12.1 s", passed=True),
        Objective(name="recovery", target="20 s", measured="25.0 s", passed=False),
    ]
    verdict = Verdict(region="eu-west", mode=DrillMode.FENCE, objectives=objectives)
    assert verdict.summary() == (
        "drill of eu-west (fence) FAILED: detection 12.1 s (target 30 s); "
        "recovery 25.0 s (target 20 s)"
    )
    passed = verdict.model_copy(update={"objectives": objectives[:1]})
    assert " passed: " in passed.summary()


def test_a_watch_report_counts_rounds_changes_and_writes_or_says_it_never_held_the_lease() -> None:
    idle = WatchReport(federation="demo", watcher="w1")
    assert "another watcher held the lease" in idle.summary()
    now = datetime.now(UTC)
    busy = WatchReport(
        federation="demo", watcher="w1", held_lease=True, rounds=[now, now], writes=1
    )
    assert (
        busy.summary() == "health of demo: 2 rounds of probes, 0 health changes, 1 registry writes"
    )
