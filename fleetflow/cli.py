"""The ``fleetflow`` command.

This is the composition root: commands that need Prefect (saving blocks) import the ``blocks``
package lazily, so ``fleetflow testbed ...`` works without a Prefect server.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ValidationError

from fleetflow import placement
from fleetflow import stack as local_stack
from fleetflow.errors import FleetflowError, StackError
from fleetflow.models import (
    BootstrapRequest,
    JoinRequest,
    RebalanceRequest,
    Report,
    RotateRequest,
    UnjoinRequest,
)
from fleetflow.testbed import bed, build
from fleetflow.testbed.spec import MemberSpec, NodeShape, TestbedSpec

Handler = Callable[[argparse.Namespace], int]


def _say(message: str) -> None:
    print(message, flush=True)


def _member(value: str) -> MemberSpec:
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected NAME:REGION or NAME:REGION:NODES, e.g. us-east-1:us-east:3"
        )
    try:
        nodes = int(parts[2]) if len(parts) == 3 else 3
        return MemberSpec(name=parts[0], region=parts[1], nodes=nodes)
    except (ValueError, ValidationError) as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
    return str(exc)


def _spec(args: argparse.Namespace) -> TestbedSpec:
    fields: dict[str, object] = {
        "base_port": args.base_port,
        "host": args.host,
        "node": NodeShape(cpu=args.node_cpu, memory=args.node_memory, pods=args.node_pods),
    }
    if args.member is not None:
        fields["members"] = args.member
    spec = TestbedSpec.model_validate(fields)
    if args.nodes is not None:
        spec = spec.model_copy(
            update={"members": [m.model_copy(update={"nodes": args.nodes}) for m in spec.members]}
        )
    return spec


def _save_blocks(spec: TestbedSpec) -> None:
    if not os.environ.get("PREFECT_API_URL"):
        _say("no PREFECT_API_URL: credentials blocks not saved")
        return
    from fleetflow.blocks.testbed import save_testbed_blocks

    saved = save_testbed_blocks(spec)
    _say(
        f"credentials blocks saved: {', '.join(saved)}"
        if saved
        else "credentials blocks already up to date"
    )


def cmd_build(args: argparse.Namespace) -> int:
    build.build(progress=_say, force=args.force)
    return 0


def cmd_testbed_up(args: argparse.Namespace) -> int:
    spec = bed.up(_spec(args), progress=_say)
    if not args.no_blocks:
        _save_blocks(spec)
    for cluster in spec.cluster_names():
        _say(f"  {cluster:<12} {bed.kubeconfig_path(cluster)}")
    return 0


def cmd_testbed_down(args: argparse.Namespace) -> int:
    bed.down(progress=_say)
    return 0


def cmd_testbed_status(args: argparse.Namespace) -> int:
    rows = bed.status()
    if args.json:
        print(bed.as_json(rows))
    elif not rows:
        _say("the test bed is not running: `fleetflow testbed up` starts it")
    else:
        header = (
            f"{'CLUSTER':<12} {'REGION':<9} {'API URL':<25} {'VERSION':<9} {'NODES':<7} REACHABLE"
        )
        _say(header)
        for r in rows:
            nodes = f"{r.nodes_ready}/{r.nodes_total}" if r.is_member else "-"
            _say(
                f"{r.cluster:<12} {r.region:<9} {r.api_url:<25} {r.version or '-':<9} "
                f"{nodes:<7} {'yes' if r.reachable else 'no'}"
            )
    return 0 if rows and all(r.ready for r in rows) else 1


def cmd_testbed_fault(args: argparse.Namespace) -> int:
    bed.fault(args.cluster, bed.Fault(args.fault), progress=_say)
    return 0


DEMO_FEDERATION = "demo"


def _demo_federation(spec: TestbedSpec) -> None:
    """Bootstrap the `demo` federation on the test bed and join its members, so that the
    scheduled rebalance deployment has a federation to work on. Reruns change nothing."""
    from fleetflow.flows.bootstrap import bootstrap_control_plane
    from fleetflow.flows.join import join_cluster

    bootstrap_control_plane(BootstrapRequest(federation=DEMO_FEDERATION, host_cluster=spec.host))
    for member in spec.members:
        join_cluster(
            JoinRequest(
                federation=DEMO_FEDERATION,
                member=member.name,
                admin_block=member.name,
                region=member.region,
            )
        )
    _say(
        f"federation {DEMO_FEDERATION!r}: host {spec.host}, members "
        f"{', '.join(m.name for m in spec.members)}"
    )


def cmd_up(args: argparse.Namespace) -> int:
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # progress lines are ours
    stack = local_stack.Stack(port=args.port)
    spec = _spec(args)
    if build.cached_versions() is None:
        _say("building the test-bed binaries (a cold build takes several minutes)")
        build.build(progress=_say)
    started = local_stack.start(stack, progress=_say)
    try:
        spec = bed.up(spec, progress=_say)
        os.environ.update(PREFECT_API_URL=stack.api_url, PREFECT_HOME=stack.env()["PREFECT_HOME"])
        _save_blocks(spec)
        _demo_federation(spec)
    except BaseException:
        for name in reversed(started):
            local_stack.stop(name, progress=_say)
        raise
    _say(
        f"\nfleetflow is up.\n  Prefect UI:   {stack.ui_url}\n  Work pool:    "
        f"{local_stack.WORK_POOL} (one process worker)\n  Clusters:     "
        f"{', '.join(spec.cluster_names())} (host: {spec.host})\n\nTry next:\n"
        "  fleetflow testbed status          # the clusters, their versions and nodes\n"
        f"  {build.bin_dir() / 'kubectl'} --kubeconfig {bed.kubeconfig_path(spec.host)} \\\n"
        "      get memberclusters -n fleetflow-system   # the federation's registry\n"
        "  fleetflow plan --total 5 --weight us-east-1=2 --weight eu-west-1=1\n"
        "  fleetflow rebalance --federation demo --dry-run\n"
        f"  export PREFECT_API_URL={stack.api_url}\n"
        "  prefect block ls                  # one credentials block per cluster\n"
        "  fleetflow testbed fault stop-kwok us-east-1   # nodes turn NotReady\n"
        "  fleetflow down                    # stop everything"
    )
    return 0


def _use_prefect_api() -> None:
    """Flows run against PREFECT_API_URL, or else the server `fleetflow up` started."""
    if os.environ.get("PREFECT_API_URL"):
        return
    stack = local_stack.Stack()
    if local_stack.healthy(stack):
        os.environ.update(PREFECT_API_URL=stack.api_url, PREFECT_HOME=stack.env()["PREFECT_HOME"])
        return
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise StackError(
            "no Prefect API to run the flow against: start one with `fleetflow up`, "
            "or set PREFECT_API_URL"
        )


def _run_flow(module: str, flow: str, request: BaseModel) -> int:
    """Run a flow in this process (its runs, logs and artifacts land in Prefect as usual)."""
    _use_prefect_api()
    report: Report = getattr(importlib.import_module(f"fleetflow.flows.{module}"), flow)(request)
    _say("")
    for action in report.actions:
        _say(("would " if report.dry_run and action.verb != "unchanged" else "") + action.line())
    for note in report.notes:
        _say(f"note: {note}")
    writes = len(report.writes())
    _say(
        f"{report.procedure}: {writes} change{'s' if writes != 1 else ''}"
        + (" planned (dry run: nothing written)" if report.dry_run else "")
    )
    return 0


def cmd_bootstrap(args: argparse.Namespace) -> int:
    request = BootstrapRequest(
        federation=args.federation,
        host_cluster=args.host_cluster,
        namespace=args.namespace,
        dns_zone=args.dns_zone,
        dry_run=args.dry_run,
    )
    return _run_flow("bootstrap", "bootstrap_control_plane", request)


def cmd_join(args: argparse.Namespace) -> int:
    request = JoinRequest(
        federation=args.federation,
        member=args.member,
        admin_block=args.admin_block or args.member,
        region=args.region,
        zone=args.zone,
        labels=dict(args.label or []),
        ingress_address=args.ingress_address,
        dry_run=args.dry_run,
    )
    return _run_flow("join", "join_cluster", request)


def cmd_unjoin(args: argparse.Namespace) -> int:
    request = UnjoinRequest(
        federation=args.federation,
        member=args.member,
        keep_workloads=not args.remove_workloads,
        force=args.force,
        admin_block=args.admin_block,
    )
    return _run_flow("unjoin", "unjoin_cluster", request)


def cmd_rotate(args: argparse.Namespace) -> int:
    request = RotateRequest(federation=args.federation, member=args.member)
    return _run_flow("rotate", "rotate_credentials", request)


def _label(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r}: expected KEY=VALUE")
    return key, val


def _flow_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "bootstrap",
        help="install a federation's control plane in its host cluster",
        description="Run the bootstrap-control-plane flow: check the host, install the "
        "namespace, the fleetflow CRDs (MemberCluster, FederatedDeployment, "
        "FederationOperation), ExternalDNS's DNSEndpoint CRD if absent and the worker's RBAC, "
        "then save the Federation block. A second run changes nothing.",
    )
    b.add_argument("--federation", required=True, help="federation name (a DNS label)")
    b.add_argument("--host-cluster", required=True, help="KubeCluster block of the host")
    b.add_argument("--namespace", default="fleetflow-system", help="namespace in the host")
    b.add_argument("--dns-zone", default="fleet.local", help="DNS zone for traffic records")
    b.add_argument("--dry-run", action="store_true", help="list what would change; write nothing")
    b.set_defaults(handler=cmd_bootstrap)

    j = sub.add_parser(
        "join",
        help="join a cluster to a federation",
        description="Run the join-cluster flow: create a least-privilege service account in "
        "the member with the admin block, save a credentials block holding only its token, and "
        "register the member in the host. Rerunning converges without duplicates.",
    )
    j.add_argument("--federation", required=True, help="Federation block")
    j.add_argument("--member", required=True, help="name of the new member (a DNS label)")
    j.add_argument(
        "--admin-block",
        help="KubeCluster block with admin rights on the member, "
        "used only during the join (default: the block named like the member)",
    )
    j.add_argument("--region", help="region, e.g. us-east")
    j.add_argument("--zone", help="zone, e.g. us-east-1a")
    j.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="label for placement; repeat for more",
    )
    j.add_argument("--ingress-address", help="address where the member's traffic lands")
    j.add_argument("--dry-run", action="store_true", help="list what would change; write nothing")
    j.set_defaults(handler=cmd_join)

    u = sub.add_parser(
        "unjoin",
        help="remove a member from a federation",
        description="Run the unjoin-cluster flow: revoke the member's access, remove its "
        "registration and credentials block. Workloads propagated to it are kept unless "
        "--remove-workloads. An unreachable member needs --force; the report lists what was "
        "left behind in it.",
    )
    u.add_argument("--federation", required=True, help="Federation block")
    u.add_argument("--member", required=True, help="member to remove")
    u.add_argument(
        "--remove-workloads",
        action="store_true",
        help="delete what the federation propagated to the member",
    )
    u.add_argument(
        "--force",
        action="store_true",
        help="remove the registration even if the member cannot be reached",
    )
    u.add_argument(
        "--admin-block",
        help="admin KubeCluster block to also remove the service "
        "account, roles and namespace (else only its tokens are revoked)",
    )
    u.set_defaults(handler=cmd_unjoin)

    r = sub.add_parser(
        "rotate",
        help="rotate a member's token",
        description="Run the rotate-credentials flow: mint a new token, verify it, save it in "
        "the member's block, then revoke the old one. The block never holds a broken token.",
    )
    r.add_argument("--federation", required=True, help="Federation block")
    r.add_argument("--member", required=True, help="member whose token to rotate")
    r.set_defaults(handler=cmd_rotate)


def cmd_plan(args: argparse.Namespace) -> int:
    """Plan one workload's replicas from flags: pure, no cluster and no Prefect needed."""
    request = placement.build_request(
        args.total,
        placement.parse_assignments(args.weight or [], "--weight"),
        mins=placement.parse_assignments(args.min or [], "--min"),
        maxes=placement.parse_assignments(args.max or [], "--max"),
        capacities=placement.parse_assignments(args.capacity or [], "--capacity"),
        currents=placement.parse_assignments(args.current or [], "--current"),
        unhealthy=args.unhealthy or [],
        capacity_aware=args.capacity_aware,
    )
    result = placement.plan(request)
    if args.json:
        print(json.dumps(placement.plan_json(result)))
    else:
        print(placement.format_plan_table(result, request))
    return 0


def cmd_rebalance(args: argparse.Namespace) -> int:
    request = RebalanceRequest(
        federation=args.federation,
        namespace=args.namespace,
        name=args.name,
        labels=dict(args.label or []),
        max_moves=args.max_moves,
        dry_run=args.dry_run,
        wait_timeout=args.wait_timeout,
    )
    return _run_flow("rebalance", "rebalance_replicas", request)


def _plan_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="show how replicas would be divided (pure, no cluster needed)",
        description="Divide --total replicas over the clusters given a --weight, with the same "
        "planner the rebalance flow uses: Sainte-Laguë rounding (monotone, no Alabama paradox), "
        "mins and maxes, capacity caps, unhealthy clusters at zero, and stability against "
        "--current. Exits 2 with a one-line reason when the request cannot be met.",
    )
    p.add_argument("--total", type=int, required=True, help="replicas to place")
    p.add_argument(
        "--weight",
        action="append",
        metavar="NAME=W",
        required=True,
        help="a cluster and its weight; repeat for each cluster",
    )
    p.add_argument("--min", action="append", metavar="NAME=N", help="at least N replicas")
    p.add_argument("--max", action="append", metavar="NAME=N", help="at most N replicas")
    p.add_argument(
        "--capacity",
        action="append",
        metavar="NAME=N",
        help="room for N replicas in all (a hard cap)",
    )
    p.add_argument(
        "--current",
        action="append",
        metavar="NAME=N",
        help="replicas running now (the plan moves as few as it can)",
    )
    p.add_argument(
        "--unhealthy",
        action="append",
        metavar="NAME",
        help="a cluster whose replicas must move elsewhere",
    )
    p.add_argument(
        "--capacity-aware", action="store_true", help="spread in proportion to weight x capacity"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"clusters": {NAME: N}, "unplaced": N}',
    )
    p.set_defaults(handler=cmd_plan)

    r = sub.add_parser(
        "rebalance",
        help="rebalance the federated workloads across members",
        description="Run the rebalance-replicas flow: probe the members (health with "
        "hysteresis, free capacity), plan each FederatedDeployment, publish the plan, then "
        "scale up before scaling down. A run that finds nothing to change writes nothing.",
    )
    r.add_argument("--federation", required=True, help="Federation block")
    r.add_argument("--namespace", help="only workloads in this namespace")
    r.add_argument("--name", help="only the workload of this name")
    r.add_argument(
        "--label",
        action="append",
        type=_label,
        metavar="KEY=VALUE",
        help="only workloads with this label; repeat for more",
    )
    r.add_argument(
        "--max-moves",
        type=int,
        default=10,
        help="most replicas moved between healthy members per workload per run",
    )
    r.add_argument(
        "--wait-timeout",
        type=float,
        default=120,
        help="seconds to wait for scale-ups before scaling down elsewhere",
    )
    r.add_argument("--dry-run", action="store_true", help="publish the plan; write nothing")
    r.set_defaults(handler=cmd_rebalance)


def cmd_down(args: argparse.Namespace) -> int:
    for name in ("worker", "server"):
        local_stack.stop(name, progress=_say)
    bed.down(progress=_say)
    _say("fleetflow is down")
    return 0


def _testbed_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("test-bed layout")
    group.add_argument(
        "--member",
        action="append",
        type=_member,
        metavar="NAME:REGION[:NODES]",
        help="a member cluster; repeat for each (default: us-east-1:us-east, us-east-2:us-east, "
        "eu-west-1:eu-west)",
    )
    group.add_argument("--nodes", type=int, help="kwok nodes per member (default 3)")
    group.add_argument("--host", default="host", help="name of the host cluster (default host)")
    group.add_argument(
        "--base-port",
        type=int,
        default=32400,
        help="API port of the host; members take the next ones (default 32400)",
    )
    group.add_argument("--node-cpu", default="8", help="allocatable CPU per node (default 8)")
    group.add_argument("--node-memory", default="32Gi", help="allocatable memory per node")
    group.add_argument("--node-pods", type=int, default=110, help="allocatable pods per node")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="fleetflow",
        description="Kubernetes federation procedures as Prefect flows: bootstrap, join, "
        "rebalance, fail over and migrate across clusters.",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser(
        "up",
        help="start a local Prefect server, a worker and the test bed",
        description="Start everything on this machine: a Prefect server on "
        "SQLite under $FLEETFLOW_HOME (default ~/.fleetflow), a process work pool "
        "with one worker, and the test bed of real clusters; save a credentials "
        "block per cluster. Running it again changes nothing.",
    )
    up.add_argument("--port", type=int, default=4200, help="Prefect server port (default 4200)")
    _testbed_options(up)
    up.set_defaults(handler=cmd_up)
    _flow_commands(sub)
    _plan_commands(sub)
    down = sub.add_parser(
        "down",
        help="stop the worker, the Prefect server and the test bed",
        description="Stop everything `fleetflow up` started.",
    )
    down.set_defaults(handler=cmd_down)

    testbed = sub.add_parser(
        "testbed",
        help="the local federation of real clusters",
        description="Real kube-apiservers on this machine, with kwok nodes.",
    )
    tsub = testbed.add_subparsers(dest="testbed_command", required=True, metavar="ACTION")
    b = tsub.add_parser(
        "build",
        help="build the Kubernetes, etcd and kwok binaries",
        description="Build kube-apiserver, kube-controller-manager, "
        "kube-scheduler, kubectl, etcd, kwok and kwokctl from the upstream Go "
        "modules into $FLEETFLOW_TESTBED_CACHE (default ~/.cache/fleetflow/"
        "testbed). A cached build does nothing; a cold one takes minutes.",
    )
    b.add_argument("--force", action="store_true", help="rebuild even when cached")
    b.set_defaults(handler=cmd_build)
    tup = tsub.add_parser(
        "up",
        help="start the host and member clusters",
        description="Start a host cluster and member clusters bound to "
        "127.0.0.1, each member with kwok nodes that carry region/zone labels "
        "and allocatable capacity. Writes a kubeconfig per cluster and, when "
        "PREFECT_API_URL is set, a credentials block per cluster. On a running "
        "test bed with the same layout it changes nothing.",
    )
    _testbed_options(tup)
    tup.add_argument("--no-blocks", action="store_true", help="do not save credentials blocks")
    tup.set_defaults(handler=cmd_testbed_up)
    tdown = tsub.add_parser(
        "down",
        help="stop and delete every test-bed cluster",
        description="Stop every test-bed cluster and leave no process behind.",
    )
    tdown.set_defaults(handler=cmd_testbed_down)
    st = tsub.add_parser(
        "status",
        help="a table of clusters: region, URL, version, nodes",
        description="Show each cluster's region, API URL, server version, "
        "nodes Ready and whether it answers. Exits 1 unless all are ready.",
    )
    st.add_argument("--json", action="store_true", help="print JSON instead of a table")
    st.set_defaults(handler=cmd_testbed_status)
    f = tsub.add_parser(
        "fault",
        help="inject a fault into one cluster",
        description="stop-cluster: stop all its processes; start-cluster: start "
        "it again whole (heals every fault); kill-apiserver: SIGKILL its "
        "kube-apiserver only; stop-kwok: stop its kwok controller so its nodes "
        "turn NotReady in about 20 s.",
    )
    f.add_argument("fault", choices=[x.value for x in bed.Fault], help="the fault")
    f.add_argument("cluster", help="a test-bed cluster name")
    f.set_defaults(handler=cmd_testbed_fault)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except ValidationError as exc:
        print(f"error: {_first_error(exc)}", file=sys.stderr)
    except FleetflowError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
