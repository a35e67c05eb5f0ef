"""The ``fleetflow`` command.

This is the composition root: commands that need Prefect (saving blocks) import the ``blocks``
package lazily, so ``fleetflow testbed ...`` works without a Prefect server.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from fleetflow import stack as local_stack
from fleetflow.kube import ClusterError, CredentialsError
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
    from blocks.testbed import save_testbed_blocks

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


def cmd_up(args: argparse.Namespace) -> int:
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
    except BaseException:
        for name in reversed(started):
            local_stack.stop(name, progress=_say)
        raise
    _say(
        f"\nfleetflow is up.\n  Prefect UI:   {stack.ui_url}\n  Work pool:    "
        f"{local_stack.WORK_POOL} (one process worker)\n  Clusters:     "
        f"{', '.join(spec.cluster_names())} (host: {spec.host})\n\nTry next:\n"
        "  fleetflow testbed status          # the clusters, their versions and nodes\n"
        f"  export PREFECT_API_URL={stack.api_url}\n"
        "  prefect block ls                  # one credentials block per cluster\n"
        "  fleetflow testbed fault stop-kwok us-east-1   # nodes turn NotReady\n"
        "  fleetflow down                    # stop everything"
    )
    return 0


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
    except (
        bed.TestbedError,
        build.BuildError,
        local_stack.StackError,
        ClusterError,
        CredentialsError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
