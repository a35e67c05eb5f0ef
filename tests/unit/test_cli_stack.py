"""The local stack's processes: where they talk to and what they inherit. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetflow.stack import Stack


def test_the_stack_runs_with_info_logs_whatever_the_callers_level(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.setenv("PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL", "ERROR")
    monkeypatch.setenv("PREFECT_LOGGING_TO_API_ENABLED", "false")
    monkeypatch.setenv("PREFECT_LOGGING_COLORS", "false")
    env = Stack(api_url="http://127.0.0.1:4555/api", home=tmp_path).env()
    assert env["PREFECT_LOGGING_LEVEL"] == "INFO"
    assert env["PREFECT_LOGGING_TO_API_ENABLED"] == "true"
    assert "PREFECT_LOGGING_LOGGERS_PREFECT_FLOW_RUNS_LEVEL" not in env
    assert env["PREFECT_LOGGING_COLORS"] == "false"  # not a level: kept
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"  # nothing phones home


def test_a_stack_targets_a_given_api_and_home(tmp_path: Path) -> None:
    stack = Stack(api_url="http://127.0.0.1:4555/api", home=tmp_path)
    env = stack.env()
    assert (stack.host, stack.port, stack.ui_url) == ("127.0.0.1", 4555, "http://127.0.0.1:4555")
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4555/api"
    assert env["PREFECT_HOME"] == str(tmp_path / "prefect")
    assert stack.run_dir() == tmp_path / "run"
    assert stack.log_path("worker") == tmp_path / "logs" / "worker.log"


def test_the_local_stack_defaults_to_fleetflow_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    assert Stack.local(4321) == Stack(api_url="http://127.0.0.1:4321/api", home=tmp_path)
    assert Stack().port == 4200
