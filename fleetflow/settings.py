"""fleetflow's one settings object, read from ``FLEETFLOW_*`` environment variables.

Every tunable lives here with its default, so a default is written once and the README's table
can be checked against it. Read it with :func:`settings` at the moment a value is needed (not at
import time): tests and ``fleetflow up`` set variables such as ``FLEETFLOW_HOME`` at run time.
Nested values use ``__``: ``FLEETFLOW_HEALTH__FAILURE_THRESHOLD=3``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from fleetflow.health import HealthPolicy


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fleetflow" / "testbed"


class Settings(BaseSettings):
    """Process-wide settings; a federation may override ``health`` on its block."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETFLOW_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".fleetflow",
        description="Local state: Prefect's database, logs, the test bed's clusters",
    )
    testbed_cache: Path = Field(
        default_factory=_default_cache,
        description="Built test-bed binaries (never in the repository)",
    )
    federation: str | None = Field(
        default=None,
        description="Federation block a command uses when --federation is left out (unset: "
        "the only Federation block saved)",
    )
    request_timeout: float = Field(
        default=10.0, gt=0, description="Seconds for one request to a cluster (connect and read)"
    )
    wait_timeout: float = Field(
        default=120.0, gt=0, description="Seconds a flow waits for replicas to turn Ready"
    )
    setup_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds to wait for control-plane steps: CRDs established, tokens issued, "
        "namespaces gone, old tokens refused",
    )
    task_timeout: float = Field(default=120.0, gt=0, description="Seconds for one task attempt")
    parallelism: int = Field(default=8, ge=1, description="Members probed or written at once")
    retries: int = Field(default=3, ge=0, description="Retries of a task on a retryable error")
    retry_delays: list[float] = Field(
        default=[1.0, 2.0, 4.0], description="Seconds before each retry"
    )
    lease_duration: int = Field(
        default=15,
        ge=3,
        description="Seconds a procedure that must not run twice (a failover) holds its lease "
        "without renewing before another run may take over",
    )
    failback_rounds: int = Field(
        default=20, ge=1, description="Most rebalance rounds one failback runs"
    )
    health: HealthPolicy = Field(default_factory=HealthPolicy)
    memory_reserve: int = Field(
        default=2048,
        ge=0,
        description="MiB of memory a test bed leaves available: `fleetflow up`, `testbed up` and "
        "the test session refuse to start what would leave less",
    )
    worker_poll_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between the local stack's worker's polls for runs to start (Prefect's "
        "default is 10: an automation's failover waited that long; PREFECT_WORKER_QUERY_SECONDS, "
        "if set, wins)",
    )
    heartbeat_seconds: int = Field(
        default=30,
        ge=30,
        description="Seconds between a flow run's heartbeats (the worker's runs and the CLI's): "
        "the local stack marks Crashed a run that stops sending them for three beats, killed or "
        "its machine gone (Prefect's default is 180, its least 30; "
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY, if set, wins)",
    )
    event_retention_days: float = Field(
        default=3.0,
        gt=0,
        description="Days the local stack's Prefect server keeps events (Prefect's default is 7; "
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD, if set, wins)",
    )
    run_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="Days the local stack's Prefect server keeps finished flow runs with their "
        "task runs, logs and artifacts (Prefect keeps them for ever; "
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD, if set, wins)",
    )
    test_base_port: int = Field(
        default=27400,
        ge=1024,
        description="First API port of the test suite's own test bed; below Linux's ephemeral "
        "range (32768+), so no outgoing connection can be holding it",
    )
    bench_base_port: int = Field(
        default=28400, ge=1024, description="First API port of the benchmarks' test bed"
    )
    failpoints: str = Field(
        default="",
        description="Crash points armed for crash tests, `;`-separated "
        "`procedure/step:when[@N]=kill|raise|sleep=S` (`fleetflow failpoints` lists them); "
        "unset in production",
    )


def settings() -> Settings:
    """The settings as the environment says now."""
    return Settings()
