"""``fleetflow autoscale status``: every autoscaled workload's budget per member, as the last
rebalance recorded it in the host. Writes nothing."""

from __future__ import annotations

import argparse
import json

from pydantic import Field

from fleetflow.autoscaling import AutoscaleRow, autoscale_table
from fleetflow.cli.console import say
from fleetflow.cli.federations import host_of
from fleetflow.cli.options import Subparsers, add_request_options, request_from
from fleetflow.cli.status import read_host
from fleetflow.errors import InvalidRequest
from fleetflow.federated import budget_rows
from fleetflow.models import DnsLabel, FederationBlock, Request
from fleetflow.status import read_workload


class AutoscaleStatusRequest(Request):
    """What ``fleetflow autoscale status`` shows."""

    federation: FederationBlock = Field(description="Federation block")
    namespace: DnsLabel | None = Field(
        default=None, description="Only this namespace of the host (default: every namespace)"
    )
    name: DnsLabel | None = Field(default=None, description="Only this FederatedDeployment")


def rows_of(request: AutoscaleStatusRequest) -> list[AutoscaleRow]:
    found = host_of(request.federation)
    listing = read_host(found.host, found.federation, request.namespace)
    rows: list[AutoscaleRow] = []
    for obj in listing.workloads:
        if request.name and obj["metadata"]["name"] != request.name:
            continue
        try:
            fd = read_workload(obj)
        except InvalidRequest:  # `fleetflow status` says why; it has no budget to show
            continue
        rows += budget_rows(fd)
    return rows


def status(args: argparse.Namespace) -> int:
    request = request_from(args, AutoscaleStatusRequest)
    rows = rows_of(request)
    if args.json:
        say(json.dumps([r.model_dump(mode="json") for r in rows], indent=2))
        return 0
    if not rows:
        where = f" named {request.name}" if request.name else ""
        say(f"no autoscaled FederatedDeployment{where} in federation {request.federation}")
        return 0
    say(autoscale_table(rows))
    return 0


def add_commands(sub: Subparsers) -> None:
    group = sub.add_parser(
        "autoscale",
        help="federated autoscaling: each member's share of a workload's replica budget",
        description="A FederatedDeployment with spec.autoscaling has one replica budget\n"
        "(minReplicas..maxReplicas) across the federation; each member's own HPA scales it\n"
        "within its share, and each rebalance run moves budget to members at their max.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = group.add_subparsers(dest="autoscale_command", metavar="COMMAND", required=True)
    parser = commands.add_parser(
        "status",
        help="show each autoscaled workload's min/max share, current and desired per member",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read the federation's autoscaled FederatedDeployments from its host and\n"
        "show, as the last rebalance run recorded them: per workload, the federation's min\n"
        "and max, the total running and Ready, and the last budget move (member '-'); per\n"
        "member, its HPA's min and max share, the replicas it runs and has Ready, and what\n"
        "its HPA asked for. Writes nothing. The rebalance run publishes the same table as\n"
        "its 'autoscale-status' artifact.",
        epilog="Exit status: 0 shown, 2 could not read (one line on stderr: an unknown "
        "federation, an unreachable host, no Prefect API).",
    )
    add_request_options(parser, AutoscaleStatusRequest)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per row: workload, member (null: the whole "
        "workload), min, max, current, ready, desired, last_move",
    )
    parser.set_defaults(handler=status)
