"""Flow-run overhead on SQLite and on PostgreSQL: the same procedures against a Prefect server on
each, started as `fleetflow up` starts it, on one test bed.

Per server: a trivial flow with one task run in this process (the bare engine), a dry-run
bootstrap and a dry-run rebalance of the `demo` federation run in this process, and the same two
through the API and the process worker (created from their deployments, as the UI or `fleetflow
drill` does; figure: creation to Completed as seen through the API). The worker asks for runs
every second. Servers: SQLite (the default), PostgreSQL with one API process, PostgreSQL with two
API processes and Redis. PostgreSQL and Redis are private instances (fleetflow.testbed.postgres).

Run by hand: FLEETFLOW_BENCH_BASE_PORT=29400 .venv/bin/python bench/bench_flow_overhead.py
(about 10 minutes on 2 cores). Each figure is the median of REPEATS runs. Each server is measured
from a process of its own: Prefect's client sends events through a process-wide worker bound to
the first API it talked to.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

if sys.argv[1:] != ["--measure"]:  # a measuring process shares its parent's home and test bed
    os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_WORKER_QUERY_SECONDS"] = "1"  # the worker asks for new runs every second
# No scheduled runs (a health watcher, a 5-minute rebalance) competing with the measured ones.
os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED"] = "false"

from kubernetes import client as k8s
from prefect import flow, task
from prefect.client.orchestration import get_client

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.cli.stack import DEMO_FEDERATION, federate_testbed
from fleetflow.errors import ResourceConflict
from fleetflow.flows.bootstrap import bootstrap_control_plane
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import api_client, apply
from fleetflow.models import BootstrapRequest, RebalanceRequest
from fleetflow.polling import poll_until
from fleetflow.settings import settings
from fleetflow.stack import Database, Stack, start, stop
from fleetflow.testbed import bed, demo
from fleetflow.testbed.postgres import postgres, redis
from fleetflow.testbed.spec import TestbedSpec

REPEATS = int(os.environ.get("FLEETFLOW_BENCH_REPEATS", "3"))
PORT_OFFSET = 70  # the servers', PostgreSQL's and Redis's ports: clear of the test bed's


def quiet(message: str) -> None:
    pass


@task
def one() -> int:
    return 1


@flow
def trivial() -> int:
    return one()


def median_seconds(run: Callable[[], object]) -> float:
    run()  # warm: imports, the server's caches, block loads
    times = []
    for _ in range(REPEATS):
        started = time.monotonic()
        run()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def through_worker(deployment: str, request: dict[str, object]) -> Callable[[], object]:
    def run() -> None:
        with get_client(sync_client=True) as client:
            found = client.read_deployment_by_name(deployment)
            flow_run = client.create_flow_run_from_deployment(
                found.id, parameters={"request": request}
            )
            finished = poll_until(
                lambda: client.read_flow_run(flow_run.id),
                lambda r: r.state is not None and r.state.is_final(),
                timeout=300,
                interval=0.1,
                waiting_for=f"{deployment} run {flow_run.name!r}",
            )
            assert finished.state is not None and finished.state.is_completed(), finished.state

    return run


def measure(spec: TestbedSpec) -> dict[str, float]:
    """The figures against the API of PREFECT_API_URL (run in a process of its own)."""
    save_testbed_blocks(spec)
    federate_testbed(spec, DEMO_FEDERATION)
    host = api_client(bed.credentials(spec.host))  # the workloads, once the CRDs are there
    with contextlib.suppress(ResourceConflict):
        k8s.CoreV1Api(host).create_namespace({"metadata": {"name": demo.NAMESPACE}})
    for workload in demo.demo_workloads([m.name for m in spec.members], DEMO_FEDERATION):
        apply(host, workload)
    bootstrap = {"federation": DEMO_FEDERATION, "host_cluster": spec.host, "dry_run": True}
    rebalance = {"federation": DEMO_FEDERATION, "dry_run": True}
    return {
        "trivial flow, one task (in process)": median_seconds(trivial),
        "bootstrap --dry-run (in process)": median_seconds(
            lambda: bootstrap_control_plane(BootstrapRequest.model_validate(bootstrap))
        ),
        "rebalance --dry-run (in process)": median_seconds(
            lambda: rebalance_replicas(RebalanceRequest.model_validate(rebalance))
        ),
        "bootstrap --dry-run (API + worker)": median_seconds(
            through_worker("bootstrap-control-plane/bootstrap", bootstrap)
        ),
        "rebalance --dry-run (API + worker)": median_seconds(
            through_worker("rebalance-replicas/rebalance", rebalance)
        ),
    }


def measured(stack: Stack) -> dict[str, float]:
    """:func:`measure` against ``stack``, in a fresh process (this file with ``--measure``)."""
    env = dict(os.environ, PREFECT_API_URL=stack.api_url, PREFECT_HOME=str(stack.prefect_home))
    done = subprocess.run(
        [sys.executable, __file__, "--measure"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return figures


@contextlib.contextmanager
def running(stack: Stack) -> Iterator[float]:
    """The stack's server, services and worker; yields the seconds they took to start."""
    started_at = time.monotonic()
    started = start(stack, progress=quiet)
    try:
        yield time.monotonic() - started_at
    finally:
        for name in reversed(started):
            stop(stack, name, progress=quiet)


def main() -> None:
    base = settings().bench_base_port
    spec = TestbedSpec(base_port=base)
    home = Path(os.environ["FLEETFLOW_HOME"])
    bed.up(spec, progress=quiet)
    columns: dict[str, dict[str, float]] = {}
    try:
        api = base + PORT_OFFSET
        sqlite = Stack(api_url=f"http://127.0.0.1:{api}/api", home=home / "sqlite")
        with running(sqlite) as startup:
            columns["SQLite"] = {"server, services, worker start": startup, **measured(sqlite)}
        with postgres(base + PORT_OFFSET + 5) as pg:
            one_process = Stack(
                api_url=f"http://127.0.0.1:{api + 1}/api",
                home=home / "postgres",
                database=Database(pg.url),
            )
            with running(one_process) as startup:
                columns["PostgreSQL"] = {
                    "server, services, worker start": startup,
                    **measured(one_process),
                }
        with postgres(base + PORT_OFFSET + 5) as pg, redis(base + PORT_OFFSET + 6) as redis_url:
            two_processes = Stack(
                api_url=f"http://127.0.0.1:{api + 2}/api",
                home=home / "postgres-2",
                database=Database(pg.url),
                api_workers=2,
                redis=redis_url,
            )
            with running(two_processes) as startup:
                columns["PostgreSQL x2 + Redis"] = {
                    "server, services, worker start": startup,
                    **measured(two_processes),
                }
    finally:
        bed.down(progress=quiet)
    names = list(columns)
    print(f"median of {REPEATS} runs, seconds; demo federation: 3 members, 3 workloads")
    print(f"{'':<38}" + "".join(f"{name:>24}" for name in names))
    for row in columns[names[0]]:
        print(f"{row:<38}" + "".join(f"{columns[name][row]:>24.2f}" for name in names))


if __name__ == "__main__":
    if sys.argv[1:] == ["--measure"]:
        running_spec = bed.load_spec()
        assert running_spec is not None, "the test bed main() started is gone"
        print(json.dumps(measure(running_spec)))
    else:
        main()
