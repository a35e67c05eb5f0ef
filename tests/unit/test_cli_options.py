"""Flow commands' options come from the request models: one default, in the model. Pure."""

from __future__ import annotations

import argparse
import io
import logging

import pytest
from pydantic import BaseModel

from fleetflow.cli import main
from fleetflow.cli._main import parser
from fleetflow.cli.console import prefect_console
from fleetflow.cli.options import add_request_options, request_from
from fleetflow.drill import DrillMode
from fleetflow.errors import InvalidRequest
from fleetflow.models import (
    BootstrapRequest,
    DrillRequest,
    FailoverRequest,
    JoinRequest,
    RebalanceRequest,
    Request,
    RotateRequest,
    UnjoinRequest,
)
from fleetflow.settings import settings

COMMANDS: dict[str, type[Request]] = {
    "bootstrap": BootstrapRequest,
    "join": JoinRequest,
    "unjoin": UnjoinRequest,
    "rotate": RotateRequest,
    "rebalance": RebalanceRequest,
}


def request(argv: list[str]) -> BaseModel:
    args = parser().parse_args(argv)
    return request_from(args, COMMANDS[argv[0]])


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_field_is_an_option_with_its_description(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = help_of(command, capsys)
    for name, field in COMMANDS[command].model_fields.items():
        assert f"--{name.replace('_', '-')}" in text
        assert " ".join((field.description or "").split()) in text


@pytest.mark.parametrize("command", COMMANDS)
def test_options_left_out_take_the_models_defaults(command: str) -> None:
    model = COMMANDS[command]
    required = {n: "x" for n, f in model.model_fields.items() if f.is_required()}
    argv = [command, *(a for n, v in required.items() for a in (f"--{n.replace('_', '-')}", v))]
    assert request(argv) == model.model_validate(required)


def test_defaults_are_shown_from_the_model(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("rebalance", capsys)
    assert "(default: 10)" in text
    assert f"(default: {settings().wait_timeout:g})" in text
    assert "Namespace in the host (default: fleetflow-system)" in help_of("bootstrap", capsys)


def test_the_wait_timeout_default_follows_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETFLOW_WAIT_TIMEOUT", "33")
    got = request(["rebalance", "--federation", "demo"])
    assert isinstance(got, RebalanceRequest)
    assert got.wait_timeout == 33


def test_join_admin_block_defaults_to_the_member_in_the_model() -> None:
    assert JoinRequest(federation="demo", member="eu-west-1").admin_block == "eu-west-1"
    got = request(["join", "--federation", "demo", "--member", "eu-west-1"])
    assert got == JoinRequest(federation="demo", member="eu-west-1", admin_block="eu-west-1")
    other = request(["join", "--federation", "demo", "--member", "m", "--admin-block", "adm"])
    assert isinstance(other, JoinRequest)
    assert other.admin_block == "adm"
    schema = JoinRequest.model_json_schema()
    assert "admin_block" not in schema["required"]  # optional in the UI's form too


def test_readme_and_test_spellings_still_work() -> None:
    got = request(
        [
            "join",
            "--federation",
            "demo",
            "--member",
            "us-east-1",
            "--region",
            "us-east",
            "--label",
            "tier=gold",
            "--labels",
            "zone=a",
            "--dry-run",
        ]
    )
    assert isinstance(got, JoinRequest)
    assert got.labels == {"tier": "gold", "zone": "a"}
    assert got.dry_run and got.region == "us-east"
    unjoin = ["unjoin", "--federation", "demo", "--member", "eu-west-1", "--force"]
    kept = request(unjoin)
    assert isinstance(kept, UnjoinRequest)
    assert kept.keep_workloads and kept.force
    for flag in ("--remove-workloads", "--no-keep-workloads"):
        removed = request([*unjoin, flag])
        assert isinstance(removed, UnjoinRequest)
        assert not removed.keep_workloads


def test_required_fields_are_required_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["rotate", "--federation", "demo"])
    assert info.value.code == 2
    assert "the following arguments are required: --member" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["rebalance", "--federation", "demo", "--max-moves", "0"],
            "error: --max-moves: Input should be greater than or equal to 1\n",
        ),
        (
            ["join", "--federation", "demo", "--member", "US_EAST"],
            "error: --member: 'US_EAST' is not a DNS label: use lowercase letters, digits and "
            "'-', at most 63 characters, starting and ending with a letter or digit\n",
        ),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_option(
    argv: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err == line


def test_a_value_argparse_cannot_read_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["rebalance", "--federation", "demo", "--label", "no-equals"])
    assert info.value.code == 2
    assert "'no-equals': expected KEY=VALUE" in capsys.readouterr().err


def test_a_model_with_a_field_argparse_cannot_take_is_refused() -> None:
    class Odd(BaseModel):
        items: set[int]

    with pytest.raises(TypeError, match="no command-line option for field 'items'"):
        add_request_options(argparse.ArgumentParser(), Odd)


def test_lists_and_enums_become_repeated_options_and_choices() -> None:
    parser = argparse.ArgumentParser()
    add_request_options(parser, DrillRequest)
    add_request_options(sub := argparse.ArgumentParser(), FailoverRequest)
    given = parser.parse_args(["--federation", "f", "--region", "eu", "--mode", "fence"])
    drill = request_from(given, DrillRequest)
    assert drill.mode is DrillMode.FENCE
    with pytest.raises(SystemExit):
        parser.parse_args(["--federation", "f", "--region", "eu", "--mode", "boom"])
    args = sub.parse_args(["--federation", "f", "--members", "a", "--members", "b"])
    assert request_from(args, FailoverRequest).members == ["a", "b"]


def test_request_from_raises_invalid_request() -> None:
    args = argparse.Namespace(federation="", member="a")
    with pytest.raises(InvalidRequest, match=r"^--federation: String should have at least 1"):
        request_from(args, RotateRequest)


def test_the_prefect_console_prints_records_without_tracebacks() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    out = io.StringIO()
    console = PrefectConsoleHandler(stream=out)
    root = logging.getLogger()
    root.addHandler(console)
    try:
        prefect_console()
        logger = logging.getLogger("fleetflow-cli-test")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with a traceback")
        logger.error("a plain line")
        prefect_console(logging.CRITICAL)
        logger.error("below the level")
    finally:
        root.removeHandler(console)
    assert "a plain line" in out.getvalue()
    assert "with a traceback" not in out.getvalue()
    assert "Traceback" not in out.getvalue()
    assert "below the level" not in out.getvalue()


def test_a_quiet_console_keeps_fleetflow_lines_and_warnings_only() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    import fleetflow.flows.rebalance as ours

    out = io.StringIO()
    console = PrefectConsoleHandler(stream=out)

    def record(text: str, level: int, path: str) -> logging.LogRecord:
        return logging.LogRecord("prefect.flow_runs", level, path, 1, text, None, None)

    engine = logging.__file__  # any path outside the fleetflow package
    root = logging.getLogger()
    root.addHandler(console)
    try:
        prefect_console(verbose=False)
        done = "Task run 'x-1' - Finished in state Completed()"
        console.handle(record(done, logging.INFO, engine))
        console.handle(record("us-east-1: Healthy -> Unhealthy", logging.INFO, ours.__file__))
        console.handle(record("Prefect warns", logging.WARNING, engine))
        retry = "Task run failed with exception: 'x' - Retry 1/3 will start 1 second(s) from now"
        console.handle(record(retry, logging.INFO, engine))
        prefect_console(verbose=True)
        console.handle(record("Beginning flow run 'y'", logging.INFO, engine))
    finally:
        root.removeHandler(console)
    shown = out.getvalue()
    assert "Finished in state" not in shown
    assert "us-east-1: Healthy -> Unhealthy" in shown
    assert "Prefect warns" in shown
    assert "Retry 1/3" in shown
    assert "Beginning flow run" in shown  # --verbose


def test_flow_commands_take_verbose_and_federation_may_be_left_out() -> None:
    args = parser().parse_args(["rebalance", "--verbose"])
    assert args.verbose is True
    assert not hasattr(args, "federation")  # request_from chooses the default federation
    assert parser().parse_args(["failover", "--region", "eu"]).verbose is False


def test_fleetflow_federation_is_the_default_federation(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETFLOW_FEDERATION", "prod")
    got = request_from(parser().parse_args(["rebalance"]), RebalanceRequest)
    assert got.federation == "prod"
    assert "federation 'prod' (FLEETFLOW_FEDERATION)" in capsys.readouterr().err


def test_a_bad_option_is_answered_before_the_default_federation_is_looked_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FLEETFLOW_FEDERATION", raising=False)
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # nothing answers there
    with pytest.raises(InvalidRequest, match=r"^--max-moves: "):
        request_from(parser().parse_args(["rebalance", "--max-moves", "0"]), RebalanceRequest)
