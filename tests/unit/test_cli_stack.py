"""The local stack's processes: where they talk to and what they inherit. Pure."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pytest
from prefect.settings import Settings as PrefectSettings
from prefect.settings.models.server.root import ServerSettings

from fleetflow import cli
from fleetflow.stack import Database, Stack, mask, recording, retention


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


def test_a_postgresql_url_is_given_to_the_server_alone_and_never_printed(tmp_path: Path) -> None:
    url = "postgresql://prefect:s3cret@db.example:5432/prefect"
    stack = Stack(api_url="http://127.0.0.1:4555/api", home=tmp_path, database=Database(url))
    server = stack.server_env()
    assert server["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://prefect:s3cret@db.example:5432/prefect"
    )
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in stack.env()  # the worker, the runs
    assert stack.storage == "PostgreSQL at postgresql://prefect:***@db.example:5432/prefect"
    assert "s3cret" not in f"{stack!r} {stack.database} {stack.database!r}"
    assert "PREFECT_MESSAGING_BROKER" not in server  # one process: Prefect's defaults


def test_the_stack_stays_on_sqlite_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PREFECT_API_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.delenv("PREFECT_SERVER_DATABASE_CONNECTION_URL", raising=False)
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    stack = Stack.local(4321)
    assert stack.database is None
    assert stack.storage == f"SQLite in {tmp_path / 'prefect'}"
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in stack.server_env()


def test_prefects_own_database_setting_is_honoured_and_kept_from_the_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "PREFECT_API_DATABASE_CONNECTION_URL", "postgresql+asyncpg://p:pw@127.0.0.1:5/prefect"
    )
    stack = Stack.local(4321)
    assert str(stack.database) == "postgresql+asyncpg://p:***@127.0.0.1:5/prefect"
    assert "PREFECT_API_DATABASE_CONNECTION_URL" not in stack.env()
    assert stack.server_env()["PREFECT_API_DATABASE_CONNECTION_URL"] == (
        "postgresql+asyncpg://p:pw@127.0.0.1:5/prefect"
    )


def test_several_api_processes_share_prefects_redis_backed_parts(tmp_path: Path) -> None:
    stack = Stack(
        home=tmp_path,
        database=Database("postgresql://p:pw@127.0.0.1:5/prefect"),
        api_workers=2,
        redis="redis://127.0.0.1:6/0",
    )
    server = stack.server_env()
    # What `prefect server start --workers 2` refuses to start without (not in-memory).
    assert server["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert server["PREFECT_MESSAGING_CACHE"] == "prefect_redis.messaging"
    assert server["PREFECT_SERVER_EVENTS_CAUSAL_ORDERING"] == "prefect_redis.ordering"
    assert server["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert server["PREFECT_REDIS_MESSAGING_URL"] == "redis://127.0.0.1:6/0"
    assert server["PREFECT_SERVER_DOCKET_URL"] == "redis://127.0.0.1:6/0"
    assert "PREFECT_MESSAGING_BROKER" not in stack.env()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--database", "mysql://root:hunter2@db/prefect"],
            "error: --database must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/"
            "DATABASE), not 'mysql://root:***@db/prefect'",
        ),
        (
            ["--database", "sqlite:///tmp/prefect.db"],
            "error: --database must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/"
            "DATABASE), not 'sqlite:///tmp/prefect.db'",
        ),
        (
            ["--api-workers", "2"],
            "error: --api-workers > 1 needs PostgreSQL: pass --database",
        ),
        (
            ["--api-workers", "2", "--database", "postgresql://u:hunter2@127.0.0.1/db"],
            "error: --api-workers > 1 needs Redis: pass --redis redis://HOST:PORT/DB",
        ),
        (
            ["--redis", "redis://127.0.0.1:6379/0"],
            "error: --redis is for a server of several processes: --api-workers N",
        ),
        (["--api-workers", "0"], "error: --api-workers must be at least 1, not 0"),
    ],
)
def test_a_bad_database_option_is_one_line_and_starts_nothing(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    assert cli.main(["up", "--port", "4555", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.err == message + "\n"
    assert "hunter2" not in captured.out + captured.err
    assert list(tmp_path.iterdir()) == []  # no pid file, no log, no test bed


def test_an_unreachable_database_is_one_line_without_its_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    with socket.socket() as bound:  # a port that is held but never listens: refused at once
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        url = f"postgresql://fleetflow:hunter2@127.0.0.1:{port}/prefect"
        assert cli.main(["up", "--port", "4555", "--database", url]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(
        f"error: cannot use PostgreSQL at postgresql://fleetflow:***@127.0.0.1:{port}/prefect: "
    )
    assert len(captured.err.splitlines()) == 1, captured.err
    assert "hunter2" not in captured.out + captured.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:pw@h:1/d", "postgresql://u:***@h:1/d"),
        ("postgresql://u:p@ss@h/d", "postgresql://u:***@h/d"),
        ("postgresql://u@h/d", "postgresql://u@h/d"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://h/d?sslmode=require", "postgresql://h/d?sslmode=require"),
    ],
)
def test_a_url_is_printed_without_its_password(url: str, masked: str) -> None:
    assert mask(url) == masked


def _unset(monkeypatch: pytest.MonkeyPatch, home: Path, names: Iterable[str]) -> None:
    """A stack home of its own, and none of these Prefect variables set by the caller."""
    monkeypatch.setenv("FLEETFLOW_HOME", str(home))
    for name in names:
        monkeypatch.delenv(name, raising=False)


def _read_back(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: Iterable[str]
) -> ServerSettings:
    """The server's settings as Prefect reads these variables of ``env`` at start."""
    with monkeypatch.context() as scope:
        for name in names:
            scope.setenv(name, env[name])
        return PrefectSettings().server


def test_the_server_keeps_events_and_finished_runs_for_a_bounded_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Read back by Prefect's own settings, as the server reads them at start."""
    _unset(monkeypatch, tmp_path, retention())

    def server_reads(env: dict[str, str]) -> tuple[timedelta, timedelta, set[str]]:
        server = _read_back(monkeypatch, env, retention())
        vacuum = server.services.db_vacuum
        return server.events.retention_period, vacuum.retention_period, vacuum.enabled_vacuum_types

    env = Stack.local(4321).server_env()
    assert server_reads(env) == (
        timedelta(days=3),
        timedelta(days=30),
        {"events", "flow_runs", "orphans"},
    )
    assert "PREFECT_SERVER_EVENTS_RETENTION_PERIOD" not in Stack.local(4321).env()  # runs: no

    monkeypatch.setenv("FLEETFLOW_EVENT_RETENTION_DAYS", "0.5")
    monkeypatch.setenv("FLEETFLOW_RUN_RETENTION_DAYS", "2")
    assert server_reads(Stack.local(4321).server_env())[:2] == (timedelta(hours=12), timedelta(2))
    monkeypatch.setenv("PREFECT_SERVER_EVENTS_RETENTION_PERIOD", "PT1H")  # Prefect's own wins
    assert server_reads(Stack.local(4321).server_env())[0] == timedelta(hours=1)


def test_the_server_records_task_runs_in_batches(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Read back by Prefect's own settings: a misspelt name would be ignored without a word."""
    _unset(monkeypatch, tmp_path, recording())
    assert not set(recording()) & set(Stack.local(4321).env())  # the server's alone
    server = _read_back(monkeypatch, Stack.local(4321).server_env(), recording())
    recorder = server.services.task_run_recorder
    assert (recorder.batch_size, recorder.read_batch_size, recorder.flush_interval) == (100, 100, 1)


def test_the_worker_polls_for_runs_every_two_seconds_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Read back by Prefect's own settings, as the worker reads them."""
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("PREFECT_WORKER_QUERY_SECONDS", raising=False)

    def worker_reads(env: dict[str, str]) -> float:
        with monkeypatch.context() as scope:
            scope.setenv("PREFECT_WORKER_QUERY_SECONDS", env["PREFECT_WORKER_QUERY_SECONDS"])
            return PrefectSettings().worker.query_seconds

    assert worker_reads(Stack.local(4321).worker_env()) == 2.0
    assert "PREFECT_WORKER_QUERY_SECONDS" not in Stack.local(4321).env()  # runs: no
    monkeypatch.setenv("FLEETFLOW_WORKER_POLL_SECONDS", "0.5")
    assert worker_reads(Stack.local(4321).worker_env()) == 0.5
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "7")  # Prefect's own wins
    assert worker_reads(Stack.local(4321).worker_env()) == 7.0
