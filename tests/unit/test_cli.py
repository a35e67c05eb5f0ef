"""The command line: help on every command, clear errors for bad options."""

from __future__ import annotations

import pytest

from fleetflow import cli


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["up"],
        ["down"],
        ["testbed"],
        ["testbed", "build"],
        ["testbed", "up"],
        ["testbed", "down"],
        ["testbed", "status"],
        ["testbed", "fault"],
        ["bootstrap"],
        ["join"],
        ["unjoin"],
        ["rotate"],
        ["plan"],
        ["rebalance"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([*argv, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fleetflow")
    assert len(out.splitlines()) > 3


def test_bad_member_option_names_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["testbed", "up", "--member", "just-a-name"])
    assert "'just-a-name': expected NAME:REGION or NAME:REGION:NODES" in capsys.readouterr().err


def test_duplicate_members_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["testbed", "up", "--member", "a:r", "--member", "a:s", "--no-blocks"])
    assert code == 2
    assert capsys.readouterr().err == "error: cluster names must be unique; repeated: a\n"


def test_unknown_fault_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["testbed", "fault", "melt", "us-east-1"])
    assert "invalid choice: 'melt'" in capsys.readouterr().err


def test_plan_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["plan", "--total", "2", "--weight", "a=2", "--weight", "b=1", "--json"])
    assert code == 0
    assert capsys.readouterr().out == '{"clusters": {"a": 1, "b": 1}, "unplaced": 0}\n'


def test_infeasible_plan_exits_nonzero_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        [
            "plan",
            "--total",
            "3",
            "--weight",
            "a=1",
            "--weight",
            "b=1",
            "--min",
            "a=2",
            "--min",
            "b=2",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err == "error: the mins add up to 4, more than the total 3: a (min 2), b (min 2)\n"


def test_plan_table_shows_unplaced(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--total", "5", "--weight", "a=1", "--max", "a=3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["CLUSTER", "CURRENT", "DESIRED", "REASON"]
    assert out[-1].split() == ["total", "0", "3", "2", "unplaced"]


def test_prefects_exit_note_stays_off_the_terminal_and_its_other_warnings_do_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On a busy machine Prefect's event worker noted, after a one-line refusal, that it was
    still sending events at exit: the line a test and a user compare had a second line."""
    import logging

    from fleetflow.cli.console import quiet_exit_notes

    quiet_exit_notes()
    quiet_exit_notes()  # once a command or twice, one filter
    events = logging.getLogger("EventsWorker")
    assert len(events.filters) == 1
    with caplog.at_level(logging.WARNING):
        events.warning("Still processing items: 3 items remaining...")
        logging.getLogger("APILogWorker").warning("Still processing items: 1 items remaining...")
        events.warning("Service 'EventsWorker' queue is full (5 items), dropping item")
    assert [r.getMessage() for r in caplog.records] == [
        "Service 'EventsWorker' queue is full (5 items), dropping item"
    ]


def test_the_error_line_starts_a_line_of_its_own_after_prefects_unfinished_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the Prefect API gone, Prefect's log worker writes why it could not send the logs
    with no newline after it; the command's error line was glued to it."""
    import sys

    from fleetflow.cli.console import LineTracking, error, track_lines

    monkeypatch.setattr(sys, "stderr", sys.stderr)  # put back whatever track_lines wraps
    track_lines()
    track_lines()  # once
    assert isinstance(sys.stderr, LineTracking)
    assert not isinstance(sys.stderr.stream, LineTracking)
    error("first")  # after nothing: no blank line before it
    sys.stderr.write("--- Error logging to API ---\n")
    sys.stderr.write("All connection attempts failed")
    error("the Prefect API did not answer")
    assert capsys.readouterr().err.splitlines() == [
        "error: first",
        "--- Error logging to API ---",
        "All connection attempts failed",
        "error: the Prefect API did not answer",
    ]
