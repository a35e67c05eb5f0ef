"""Crash points: the value that arms them, the points a run passes, the actions, and every step
a flow enters declared (so ``fleetflow failpoints`` lists every one)."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleetflow import failpoints
from fleetflow.cli.failpoints import catalogue
from fleetflow.cli.failpoints import run as cli_run
from fleetflow.errors import FailpointHit, InvalidRequest

ROOT = Path(__file__).resolve().parents[2]
PROC = failpoints.declare("unit-proc", ("first", "second"))


@pytest.mark.parametrize(
    ("value", "armed"),
    [
        ("failover/scaled-up:after=kill", ["failover/scaled-up:after=kill"]),
        ("failover/scaled-up:write=raise", ["failover/scaled-up:write=raise"]),
        ("failover/scaled-up:write@3=kill", ["failover/scaled-up:write@3=kill"]),
        ("join/registered:before=sleep=2.5", ["join/registered:before=sleep=2.5"]),
        (" a/b:before=kill ; c/d:after=raise ;", ["a/b:before=kill", "c/d:after=raise"]),
        ("a/b:write=sleep=1;a/b:write@3=kill", ["a/b:write=sleep=1", "a/b:write@3=kill"]),
        ("", []),
    ],
)
def test_a_value_arms_the_points_it_names(value: str, armed: list[str]) -> None:
    assert [p.text() for p in failpoints.parse(value).values()] == armed


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("failover=kill", "names no point"),
        ("failover/scaled-up=kill", "names no point"),
        ("failover/scaled-up:during=kill", "'during' is none of before, write, after"),
        ("failover/scaled-up:after@2=kill", "@N is only for :write"),
        ("failover/scaled-up:write@0=kill", "@0 is no count from 1"),
        ("failover/scaled-up:write@x=kill", "@x is no count from 1"),
        ("failover/scaled-up:after=explode", "'explode' is none of kill, raise, sleep"),
        ("failover/scaled-up:after=sleep", "none of kill, raise, sleep"),
        ("failover/scaled-up:after=kill=3", "none of kill, raise, sleep"),
        ("failover/scaled-up:after=sleep=soon", "sleep=soon is no number of seconds"),
    ],
)
def test_a_value_that_names_no_point_is_refused_in_one_line(value: str, why: str) -> None:
    with pytest.raises(InvalidRequest, match=why) as refused:
        failpoints.parse(value)
    assert "\n" not in str(refused.value)
    assert "`fleetflow failpoints` lists the points" in str(refused.value)


def test_a_point_its_procedure_does_not_have_is_refused_another_processes_left_alone() -> None:
    with pytest.raises(InvalidRequest, match="unit-proc/third:before, which unit-proc does not"):
        failpoints.check(failpoints.parse("unit-proc/third:before=kill"), failpoints.declared())
    failpoints.check(failpoints.parse("elsewhere/x:before=kill"), failpoints.declared())


def test_a_run_passes_before_each_write_and_after_in_order() -> None:
    with failpoints.traced() as seen:
        failpoints.wrote()  # outside any step: no point
        failpoints.enter("unit-proc", "first")
        failpoints.wrote()
        failpoints.wrote()
        failpoints.leave("unit-proc", "first")
        failpoints.enter("unit-proc", "second")
        failpoints.leave("unit-proc", "second")
    assert seen == [
        "unit-proc/first:before",
        "unit-proc/first:write@1",
        "unit-proc/first:write@2",
        "unit-proc/first:after",
        "unit-proc/second:before",
        "unit-proc/second:after",
    ]


def test_a_runbook_step_ends_the_one_before() -> None:
    book = failpoints.Runbook("unit-book", ("a", "b"))
    with failpoints.traced() as seen:
        book.step("a")
        book.step("b")
        book.end()
        book.end()  # once through: nothing more
    assert seen == [
        "unit-book/a:before",
        "unit-book/a:after",
        "unit-book/b:before",
        "unit-book/b:after",
    ]


def test_a_runbook_begun_again_after_a_failed_run_ends_nothing_of_it() -> None:
    book = failpoints.Runbook("unit-again", ("a", "b"))
    book.step("a")
    book.step("b")  # the run fails here: no end()
    with failpoints.traced() as seen:
        book.step("a")
    assert seen == ["unit-again/a:before"]


def test_a_step_never_declared_cannot_be_entered() -> None:
    with pytest.raises(RuntimeError, match="never declared"):
        failpoints.enter("unit-proc", "third")


def test_raise_fires_at_the_hit_it_names_and_only_then(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "unit-proc/first:write@2=raise")
    failpoints.enter("unit-proc", "first")
    failpoints.wrote()
    with pytest.raises(FailpointHit, match=r"unit-proc/first:write@2=raise"):
        failpoints.wrote()
    failpoints.wrote()  # the third: not armed
    failpoints.leave("unit-proc", "first")


def test_sleep_holds_the_run_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(failpoints.ENV, "unit-proc/second:before=sleep=0.3")
    started = time.monotonic()
    failpoints.enter("unit-proc", "second")
    assert time.monotonic() - started >= 0.3
    failpoints.leave("unit-proc", "second")


def test_a_typo_in_the_value_stops_the_run_at_its_first_point(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(failpoints.ENV, "unit-proc/frist:after=kill")
    with pytest.raises(InvalidRequest, match="which unit-proc does not have"):
        failpoints.enter("unit-proc", "first")


def test_kill_sends_sigkill_to_the_process_running_the_step() -> None:
    code = (
        "from fleetflow import failpoints\n"
        "failpoints.declare('p', ('s',))\n"
        "failpoints.enter('p', 's')\n"
        "print('survived')\n"
    )
    env = {**os.environ, failpoints.ENV: "p/s:before=kill"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL
    assert "survived" not in done.stdout
    assert "failpoint p/s:before=kill" in done.stderr


def _entered(tree: ast.AST, module: object) -> set[str]:
    """The steps a flow module enters: literal (or module constant) arguments of ``.step(``
    and ``.phase(``."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("step", "phase")
            and node.args
        ):
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.add(arg.value)
            elif isinstance(arg, ast.Name):
                found.add(getattr(module, arg.id))
    return found


def test_every_step_a_flow_enters_is_declared_and_every_declared_step_is_entered() -> None:
    import importlib

    procedures = catalogue()
    steps = {s for p, ss in procedures.items() if not p.startswith("unit-") for s in ss}
    entered: set[str] = set()
    for path in sorted((ROOT / "flows").glob("*.py")):
        module = importlib.import_module(f"fleetflow.flows.{path.stem}")
        entered |= _entered(ast.parse(path.read_text()), module)
    assert entered - steps == set(), "entered, never declared"
    assert steps - entered == set(), "declared, never entered"
    writers = {"bootstrap", "join", "unjoin", "rotate", "taint", "rebalance", "failover"}
    writers |= {"failback", "drill", "migrate", "migrate-cleanup"}
    assert writers <= set(procedures), "a procedure that writes has no crash points"


def test_the_command_lists_and_checks(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    args = argparse.Namespace(procedure=["failover"], json=False, check=None)
    assert cli_run(args) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "failover:"
    assert "  failover/scaled-up:{before,write,after}" in listed
    args = argparse.Namespace(procedure=[], json=False, check="failover/ready:after=raise")
    assert cli_run(args) == 0
    assert capsys.readouterr().out.strip() == "failover/ready:after=raise"
    args = argparse.Namespace(procedure=[], json=False, check="mars/landed:after=kill")
    with pytest.raises(InvalidRequest, match="no procedure 'mars'"):
        cli_run(args)
