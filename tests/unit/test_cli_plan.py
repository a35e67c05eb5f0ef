"""``fleetflow plan``: the flag parsing and output helpers, and ``--workload``. Pure."""

from __future__ import annotations

import json

import pytest

from fleetflow import cli
from fleetflow.cli.plan import build_request, format_plan_table, parse_assignments, plan_json
from fleetflow.errors import PlacementError
from fleetflow.placement import Candidate, ClusterCandidate, plan, plan_replicas


def test_parse_assignments() -> None:
    assert parse_assignments(["a=1", " b = 20 "], "--weight") == {"a": 1, "b": 20}
    assert parse_assignments([], "--min") == {}


@pytest.mark.parametrize("bad", ["a", "a=", "=3", "a=x", "a=-1", "a=1.5", "a=1=2"])
def test_parse_assignments_names_the_bad_value(bad: str) -> None:
    with pytest.raises(ValueError, match=f"--max {bad!r}: expected NAME=N"):
        parse_assignments(["ok=1", bad], "--max")


def test_parse_assignments_rejects_a_repeated_name() -> None:
    with pytest.raises(ValueError, match="--min 'a=2': a is given more than once"):
        parse_assignments(["a=1", "a=2"], "--min")


def test_build_request_from_flags() -> None:
    request = build_request(
        5,
        {"x": 2, "y": 1},
        mins={"y": 1},
        maxes={"x": 3},
        capacities={"y": 9},
        currents={"x": 1},
        unhealthy=["y"],
    )
    assert request.clusters == [
        ClusterCandidate(name="x", weight=2, max=3, current=1),
        ClusterCandidate(name="y", weight=1, min=1, capacity=9, healthy=False),
    ]
    assert plan(request).replicas == {"x": 3, "y": 0}
    assert plan(request).unplaced == 2


@pytest.mark.parametrize("flag", ["mins", "maxes", "capacities", "currents"])
def test_build_request_rejects_unknown_names(flag: str) -> None:
    with pytest.raises(PlacementError, match=r"unknown cluster q, z; .*--weight: a, b"):
        build_request(3, {"a": 1, "b": 1}, **{flag: {"z": 1, "q": 2}})  # type: ignore[arg-type]
    with pytest.raises(PlacementError, match="--unhealthy: unknown cluster z"):
        build_request(3, {"a": 1}, unhealthy=["z"])


def test_format_plan_table() -> None:
    request = build_request(
        10,
        {"us-east-1": 1, "eu-west-1": 1, "b": 0},
        maxes={"eu-west-1": 3},
        currents={"b": 2},
        mins={"b": 2},
    )
    table = format_plan_table(plan(request), request)
    assert table.splitlines() == [
        "CLUSTER    CURRENT  DESIRED  REASON",
        "b                2        2  min 2",
        "eu-west-1        0        3  at max 3",
        "us-east-1        0        5  weight share",
        "total            2       10",
    ]
    short = build_request(10, {"a": 1}, maxes={"a": 4})
    assert format_plan_table(plan(short), short).splitlines() == [
        "CLUSTER  CURRENT  DESIRED  REASON",
        "a              0        4  at max 4",
        "total          0        4  6 unplaced",
    ]


def test_plan_json_shape() -> None:
    p = plan_replicas(3, [Candidate("b", 1), Candidate("a", 2)])
    assert plan_json(p) == {"clusters": {"a": 2, "b": 1}, "unplaced": 0}


def test_plan_json_reports_the_shortfall() -> None:
    cs = [Candidate("a", max=3), Candidate("b", capacity=2), Candidate("c", weight=0, min=1)]
    p = plan_replicas(10, cs)
    assert plan_json(p) == {"clusters": {"a": 3, "b": 2, "c": 1}, "unplaced": 4}


def _plan(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, int]:
    assert cli.main(["plan", *argv, "--json"]) == 0
    clusters: dict[str, int] = json.loads(capsys.readouterr().out)["clusters"]
    return clusters


def test_workload_breaks_ties_as_the_planner_does(capsys: pytest.CaptureFixture[str]) -> None:
    weights = ["--weight", "a=1", "--weight", "b=1", "--weight", "c=1"]
    landed = set()
    for i in range(12):
        got = _plan(["--total", "1", *weights, "--workload", f"shop/web-{i}"], capsys)
        clusters = [ClusterCandidate(name=n) for n in "abc"]
        assert got == plan_replicas(1, clusters, workload=f"shop/web-{i}").replicas
        landed |= {name for name, n in got.items() if n}
    assert landed == {"a", "b", "c"}  # spread, where without --workload "a" always wins
    assert _plan(["--total", "1", *weights], capsys) == {"a": 1, "b": 0, "c": 0}


def test_workload_keeps_two_to_one_fair(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--total", "2", "--weight", "a=2", "--weight", "b=1", "--workload", "shop/web"]
    assert _plan(argv, capsys) == {"a": 1, "b": 1}


@pytest.mark.parametrize("bad", ["web", "/web", "shop/", "a/b/c"])
def test_workload_must_be_namespace_slash_name(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["plan", "--total", "1", "--weight", "a=1", "--workload", bad])
    assert info.value.code == 2
    assert f"{bad!r}: expected NAMESPACE/NAME, e.g. shop/web" in capsys.readouterr().err


def test_plan_explains_the_group_in_use_and_each_cluster(
    capsys: pytest.CaptureFixture[str],
) -> None:
    flags = ["--total", "6", "--weight", "a=1", "--weight", "b=1", "--weight", "c=1"]
    flags += ["--region", "a=us", "--region", "b=us", "--region", "c=eu"]
    flags += ["--group", "us=a,b", "--group", "eu=c", "--unhealthy", "a", "--unhealthy", "b"]
    assert cli.main(["plan", *flags, "--explain"]) == 0
    out = capsys.readouterr().out
    assert (
        "group us (#1): no member can take replicas now (a unhealthy, b unhealthy)" in out
        and "group eu (#2) in use" in out
    )
    assert "a: unhealthy: 0; group us passed over (weight 1, min 0, region us, unhealthy)" in out
    assert cli.main(["plan", *flags[:-4], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clusters"] == {"a": 3, "b": 3, "c": 0}


def test_plan_spread_and_taints_from_flags(capsys: pytest.CaptureFixture[str]) -> None:
    flags = ["--total", "6", "--weight", "a=2", "--weight", "b=1", "--weight", "c=1"]
    flags += ["--region", "a=us", "--region", "b=us", "--region", "c=eu"]
    flags += ["--taint", "b=maintenance:NoExecute", "--spread", "region=2"]
    assert cli.main(["plan", *flags, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clusters"] == {"a": 4, "b": 0, "c": 2}
    assert cli.main(["plan", *flags, "--toleration", "maintenance", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clusters"]["b"] > 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--spread", "region=3"], "its members span only 2 (eu, us): lower minGroups"),
        (["--spread", "region=x"], "--spread 'region=x': expected BY=MIN[:MAX]"),
        (["--spread", "region=3:2"], "minGroups 3 is above maxGroups 2"),
        (["--toleration", "=x"], "--toleration '=x': key"),
        (["--toleration", "k:Never"], "effect: Input should be 'NoSchedule' or 'NoExecute'"),
        (["--taint", "a=k:Sometimes"], "KEY[=VALUE]:EFFECT"),
        (["--taint", "z=k:NoSchedule"], "unknown cluster z"),
        (["--group", "g=a,zz"], "--group 'g=a,zz': unknown cluster zz"),
    ],
)
def test_plan_refuses_bad_rules_in_one_line(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--total", "3", "--weight", "a=1", "--weight", "c=1", "--region", "a=us"]
    assert cli.main(["plan", *base, "--region", "c=eu", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert message in err, err
