"""``fleetflow up`` and ``fleetflow down``: the local stack (a Prefect server, a worker, the test
bed, and a ``demo`` federation on it) started and stopped on this machine."""

from __future__ import annotations

import argparse
import contextlib
import logging

import httpx
from kubernetes import client as k8s

from fleetflow import stack as local_stack
from fleetflow.cli.console import prefect_console, say
from fleetflow.cli.options import Subparsers
from fleetflow.cli.testbed import add_layout_options, save_blocks, spec_from
from fleetflow.errors import ResourceConflict
from fleetflow.kube import api_client, apply
from fleetflow.models import BootstrapRequest, JoinRequest, TaintRequest
from fleetflow.testbed import bed, build, demo, memory
from fleetflow.testbed.spec import TestbedSpec

DEMO_FEDERATION = "demo"
WATCHER = "watch-health/health-watch"


def federate_testbed(
    spec: TestbedSpec, federation: str, namespace: str = "fleetflow-system"
) -> None:
    """Bootstrap ``federation`` on the test bed's host, with the test bed's DNS zone and server,
    and join every member with its region and ingress address. Reruns change nothing."""
    from fleetflow.flows.bootstrap import bootstrap_control_plane
    from fleetflow.flows.join import join_cluster

    bootstrap_control_plane(
        BootstrapRequest(
            federation=federation,
            host_cluster=spec.host,
            namespace=namespace,
            dns_zone=spec.dns_zone,
            dns_server=f"127.0.0.1:{spec.dns_ports().dns}",
        )
    )
    for member in spec.members:
        join_cluster(
            JoinRequest(
                federation=federation,
                member=member.name,
                region=member.region,
                ingress_address=member.ingress_address,
            )
        )


def _demo_federation(spec: TestbedSpec) -> None:
    """The `demo` federation with sample workloads, so that every deployment has something to
    act on."""
    from fleetflow.flows.taint import taint_member

    prefect_console(logging.WARNING)  # the progress lines are ours; the runs' logs go to the UI
    federate_testbed(spec, DEMO_FEDERATION)
    host = api_client(bed.credentials(spec.host))
    with contextlib.suppress(ResourceConflict):
        k8s.CoreV1Api(host).create_namespace({"metadata": {"name": demo.NAMESPACE}})
    members = [m.name for m in spec.members]
    for member, taints in demo.demo_taints(members).items():
        taint_member(TaintRequest(federation=DEMO_FEDERATION, member=member, add=taints))
    for workload in demo.demo_workloads(members, DEMO_FEDERATION):
        apply(host, workload)
    say(
        f"federation {DEMO_FEDERATION!r}: host {spec.host}, members "
        f"{', '.join(m.name for m in spec.members)}; sample workloads in namespace "
        f"{demo.NAMESPACE} (web, api and ledger answer in DNS at 127.0.0.1:{spec.dns_ports().dns})"
        + "".join(f"; {m} tainted {', '.join(t)}" for m, t in demo.demo_taints(members).items())
    )


def _start_watcher() -> None:
    """Start a health watcher now, not at the schedule's first run ten minutes from now; the
    watcher's lease lets only one of them probe."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(WATCHER)
        live = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                )
            ),
        )
        if not live:
            client.create_flow_run_from_deployment(deployment.id)
    say(f"health watcher for {DEMO_FEDERATION!r}: running ({WATCHER})")


def cmd_up(args: argparse.Namespace) -> int:
    from fleetflow.cli.runs import prefect_api

    stack = local_stack.Stack.local(args.port, args.database, args.api_workers, args.redis)
    spec = spec_from(args)
    stack.check()
    # The whole need is weighed before the first process starts, the stack's included.
    starting = not local_stack.running(stack, "server")
    bed.check_memory(spec, memory.stack_parts(stack.api_workers) if starting else [])
    if build.cached_versions() is None:
        say("building the test-bed binaries (a cold build takes several minutes)")
        build.build(progress=say)
    started = local_stack.start(stack, progress=say)
    try:
        spec = bed.up(spec, progress=say)
        with prefect_api(stack):
            save_blocks(spec)
            _demo_federation(spec)
            _start_watcher()
    except BaseException:
        for name in reversed(started):
            local_stack.stop(stack, name, progress=say)
        raise
    say(
        f"\nfleetflow is up.\n  Prefect UI:   {stack.ui_url}\n  Database:     {stack.storage}"
        "\n  Work pool:    "
        f"{local_stack.WORK_POOL} (one process worker)\n  Clusters:     "
        f"{', '.join(spec.cluster_names())} (host: {spec.host})\n\nTry next:\n"
        "  fleetflow testbed status          # the clusters, their versions and nodes\n"
        f"  {build.bin_dir() / 'kubectl'} --kubeconfig {bed.kubeconfig_path(spec.host)} \\\n"
        "      get memberclusters -n fleetflow-system   # the federation's registry\n"
        "  fleetflow plan --total 5 --weight us-east-1=2 --weight eu-west-1=1\n"
        "  fleetflow rebalance --federation demo --dry-run\n"
        "  fleetflow failover --federation demo --region eu-west --dry-run\n"
        f"  dig @127.0.0.1 -p {spec.dns_ports().dns} web.{spec.dns_zone}   # after a rebalance\n"
        f"  export PREFECT_API_URL={stack.api_url}\n"
        "  prefect block ls                  # one credentials block per cluster\n"
        "  fleetflow testbed fault stop-kwok us-east-1   # nodes turn NotReady\n"
        "  fleetflow down                    # stop everything"
    )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    stack = local_stack.Stack()
    local_stack.stop(stack, "worker", progress=say)
    if local_stack.healthy(stack):  # the runs the worker was running are orphans now
        with contextlib.suppress(httpx.HTTPError):
            local_stack.stop_runs(stack, progress=say)
            local_stack.crash_orphans(stack, progress=say)
    for name in ("services", "server"):
        local_stack.stop(stack, name, progress=say)
    bed.down(progress=say)
    say("fleetflow is down")
    return 0


def _default_need() -> list[memory.Part]:
    return memory.bed_parts(TestbedSpec()) + memory.stack_parts()


def add_commands(sub: Subparsers) -> None:
    up = sub.add_parser(
        "up",
        help="start a local Prefect server, a worker and the test bed",
        description="Start everything on this machine: a Prefect server on "
        "SQLite under $FLEETFLOW_HOME (default ~/.fleetflow) or on PostgreSQL (--database, or "
        "Prefect's PREFECT_API_DATABASE_CONNECTION_URL), a process work pool "
        "with one worker, and the test bed of real clusters; save a credentials "
        "block per cluster and bootstrap a `demo` federation joining every member. Running it "
        "again changes nothing. Refuses, before starting a process, what the machine's available "
        f"memory cannot hold (by default {memory.describe(_default_need())}), with "
        "FLEETFLOW_MEMORY_RESERVE MiB left free.",
    )
    up.add_argument(
        "--port",
        type=int,
        default=local_stack.DEFAULT_PORT,
        help=f"Prefect server port (default {local_stack.DEFAULT_PORT})",
    )
    up.add_argument(
        "--database",
        metavar="URL",
        help="run the Prefect server on this PostgreSQL database "
        "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE; it must exist); checked before anything "
        "starts",
    )
    up.add_argument(
        "--api-workers",
        type=int,
        default=1,
        metavar="N",
        help="serve the API from N processes (default 1); more than one needs --database and "
        "--redis, and runs Prefect's services as a process of their own",
    )
    up.add_argument(
        "--redis",
        metavar="URL",
        help="the Redis that several API processes share (redis://HOST:PORT/DB)",
    )
    add_layout_options(up)
    up.set_defaults(handler=cmd_up)
    down = sub.add_parser(
        "down",
        help="stop the worker, the Prefect server and the test bed",
        description="Stop everything `fleetflow up` started.",
    )
    down.set_defaults(handler=cmd_down)
