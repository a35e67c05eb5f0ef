"""``fleetflow testbed``: the local federation of real clusters (build, up, down, status, fault).

No command here needs Prefect, except that ``up`` saves a credentials block per cluster when a
Prefect API is configured.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from pydantic import ValidationError

from fleetflow.cli.console import say
from fleetflow.cli.options import Subparsers
from fleetflow.testbed import bed, build, memory
from fleetflow.testbed.spec import MemberSpec, NodeShape, TestbedSpec


def _member(value: str) -> MemberSpec:
    parts = value.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected NAME:REGION or NAME:REGION:NODES, e.g. us-east-1:us-east:3"
        )
    try:
        nodes = int(parts[2]) if len(parts) == 3 else 3
        return MemberSpec(name=parts[0], region=parts[1], nodes=nodes)
    except ValueError as exc:  # a ValidationError is a ValueError too
        reason = (
            "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            if isinstance(exc, ValidationError)
            else str(exc)
        )
        raise argparse.ArgumentTypeError(f"{value!r}: {reason}") from None


def spec_from(args: argparse.Namespace) -> TestbedSpec:
    """The test bed's layout from the options of ``add_layout_options``."""
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


def save_blocks(spec: TestbedSpec) -> None:
    """A KubeCluster block per cluster, in the Prefect API configured (if any)."""
    from prefect.settings import PREFECT_API_URL

    from fleetflow.blocks.testbed import save_testbed_blocks

    if not PREFECT_API_URL.value():
        say("no PREFECT_API_URL: credentials blocks not saved")
        return
    saved = save_testbed_blocks(spec)
    say(
        f"credentials blocks saved: {', '.join(saved)}"
        if saved
        else "credentials blocks already up to date"
    )


def cmd_build(args: argparse.Namespace) -> int:
    build.build(progress=say, force=args.force)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    spec = bed.up(spec_from(args), progress=say)
    if not args.no_blocks:
        save_blocks(spec)
    for cluster in spec.cluster_names():
        say(f"  {cluster:<12} {bed.kubeconfig_path(cluster)}")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    bed.down(progress=say)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows, dns = bed.status(), bed.dns_status()
    if args.json:
        data = json.loads(bed.as_json(rows))
        say(json.dumps({"clusters": data, "dns": dataclasses.asdict(dns) if dns else None}))
    elif not rows:
        say("the test bed is not running: `fleetflow testbed up` starts it")
    else:
        say(f"{'CLUSTER':<12} {'REGION':<9} {'API URL':<25} {'VERSION':<9} {'NODES':<7} REACHABLE")
        for r in rows:
            nodes = f"{r.nodes_ready}/{r.nodes_total}" if r.is_member else "-"
            say(
                f"{r.cluster:<12} {r.region:<9} {r.api_url:<25} {r.version or '-':<9} "
                f"{nodes:<7} {'yes' if r.reachable else 'no'}"
            )
        if dns:
            stopped = (
                f"  stopped: {', '.join(dns.missing)} (logs {dns.logs})" if dns.missing else ""
            )
            say(
                f"DNS {dns.zone} at {dns.server}:{dns.port}: "
                f"{'answering' if dns.answering else 'NOT answering'}{stopped}"
            )
    healthy = bool(rows) and all(r.ready for r in rows) and (dns is None or dns.ready)
    return 0 if healthy else 1


def cmd_fault(args: argparse.Namespace) -> int:
    bed.fault(args.cluster, bed.Fault(args.fault), progress=say)
    return 0


def add_layout_options(parser: argparse.ArgumentParser) -> None:
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
        default=23400,
        help="API port of the host; members take the next ones, the other processes the ports "
        "from +90 (default 23400: below the ephemeral range)",
    )
    group.add_argument("--node-cpu", default="8", help="allocatable CPU per node (default 8)")
    group.add_argument("--node-memory", default="32Gi", help="allocatable memory per node")
    group.add_argument("--node-pods", type=int, default=110, help="allocatable pods per node")


def add_commands(sub: Subparsers) -> None:
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
    up = tsub.add_parser(
        "up",
        help="start the host and member clusters",
        description="Start a host cluster and member clusters bound to "
        "127.0.0.1, each member with kwok nodes that carry region/zone labels "
        "and allocatable capacity. Writes a kubeconfig per cluster and, when "
        "PREFECT_API_URL is set, a credentials block per cluster. On a running "
        "test bed with the same layout it changes nothing. Before starting anything it weighs "
        f"what it would start ({memory.describe(memory.bed_parts(TestbedSpec()))} by default) "
        "against the memory available and refuses what would leave less than "
        "FLEETFLOW_MEMORY_RESERVE MiB (default 2048), naming what to stop or the smaller size.",
    )
    add_layout_options(up)
    up.add_argument("--no-blocks", action="store_true", help="do not save credentials blocks")
    up.set_defaults(handler=cmd_up)
    down = tsub.add_parser(
        "down",
        help="stop and delete every test-bed cluster",
        description="Stop every test-bed cluster and leave no process behind.",
    )
    down.set_defaults(handler=cmd_down)
    status = tsub.add_parser(
        "status",
        help="a table of clusters: region, URL, version, nodes",
        description="Show each cluster's region, API URL, server version, "
        "nodes Ready and whether it answers. Exits 1 unless all are ready.",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=cmd_status)
    fault = tsub.add_parser(
        "fault",
        help="inject a fault into one cluster",
        description="stop-cluster: stop all its processes; start-cluster: start "
        "it again whole (heals every fault); kill-apiserver: "
        "SIGKILL its kube-apiserver only; stop-kwok: stop its kwok controller so its nodes "
        "turn NotReady in about 20 s.",
    )
    fault.add_argument("fault", choices=[x.value for x in bed.Fault], help="the fault")
    fault.add_argument("cluster", help="a test-bed cluster name")
    fault.set_defaults(handler=cmd_fault)
