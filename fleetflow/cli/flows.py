"""The flow commands: ``bootstrap``, ``join``, ``unjoin``, ``rotate``, ``rebalance``,
``taint``, ``failover``, ``failback``, ``migrate``, ``migrate-cleanup``.

Each runs its flow in this process with the request its options describe; the options and their
defaults come from the request model. Flows (and Prefect) are imported when a command runs, so
``fleetflow --help`` and ``fleetflow plan`` stay quick.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeVar

from fleetflow.cli.options import Handler, Subparsers, add_request_options, request_from
from fleetflow.models import (
    BootstrapRequest,
    CleanupRequest,
    FailbackRequest,
    FailoverRequest,
    JoinRequest,
    MigrateRequest,
    RebalanceRequest,
    Request,
    RotateRequest,
    TaintRequest,
    UnjoinRequest,
)

if TYPE_CHECKING:
    from prefect import Flow

    from fleetflow.models import Report

R = TypeVar("R", bound=Request)


def _run(flow: Flow[[R], Report], request: R, args: argparse.Namespace) -> int:
    from fleetflow.cli.runs import run_flow

    return run_flow(flow, request, verbose=args.verbose)


def bootstrap(args: argparse.Namespace) -> int:
    from fleetflow.flows.bootstrap import bootstrap_control_plane

    return _run(bootstrap_control_plane, request_from(args, BootstrapRequest), args)


def join(args: argparse.Namespace) -> int:
    from fleetflow.flows.join import join_cluster

    return _run(join_cluster, request_from(args, JoinRequest), args)


def unjoin(args: argparse.Namespace) -> int:
    from fleetflow.flows.unjoin import unjoin_cluster

    return _run(unjoin_cluster, request_from(args, UnjoinRequest), args)


def rotate(args: argparse.Namespace) -> int:
    from fleetflow.flows.rotate import rotate_credentials

    return _run(rotate_credentials, request_from(args, RotateRequest), args)


def rebalance(args: argparse.Namespace) -> int:
    from fleetflow.flows.rebalance import rebalance_replicas

    return _run(rebalance_replicas, request_from(args, RebalanceRequest), args)


def taint(args: argparse.Namespace) -> int:
    from fleetflow.flows.taint import taint_member

    return _run(taint_member, request_from(args, TaintRequest), args)


def failover(args: argparse.Namespace) -> int:
    from fleetflow.flows.failover import regional_failover

    return _run(regional_failover, request_from(args, FailoverRequest), args)


def failback(args: argparse.Namespace) -> int:
    from fleetflow.flows.failover import regional_failback

    return _run(regional_failback, request_from(args, FailbackRequest), args)


def migrate(args: argparse.Namespace) -> int:
    from fleetflow.flows.migrate import migrate_workload

    return _run(migrate_workload, request_from(args, MigrateRequest), args)


def migrate_cleanup(args: argparse.Namespace) -> int:
    from fleetflow.flows.migrate import cleanup_migration

    return _run(cleanup_migration, request_from(args, CleanupRequest), args)


def _command(
    sub: Subparsers,
    name: str,
    model: type[Request],
    handler: Handler,
    help: str,
    description: str,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help, description=description)
    add_request_options(parser, model, aliases={"labels": ["--label"]})
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show Prefect's own log lines (each task run, the run's start and end); "
        "by default only fleetflow's lines, warnings and the report",
    )
    parser.set_defaults(handler=handler)
    return parser


def add_commands(sub: Subparsers) -> None:
    _command(
        sub,
        "bootstrap",
        BootstrapRequest,
        bootstrap,
        help="install a federation's control plane in its host cluster",
        description="Run the bootstrap-control-plane flow: check the host, install the "
        "namespace, the fleetflow CRDs (MemberCluster, FederatedDeployment, "
        "FederationOperation), ExternalDNS's DNSEndpoint CRD if absent and the worker's RBAC, "
        "then save the Federation block. A second run changes nothing.",
    )
    _command(
        sub,
        "join",
        JoinRequest,
        join,
        help="join a cluster to a federation",
        description="Run the join-cluster flow: create a least-privilege service account in "
        "the member with the admin block, save a credentials block holding only its token, and "
        "register the member in the host. Rerunning converges without duplicates.",
    )
    unjoin_parser = _command(
        sub,
        "unjoin",
        UnjoinRequest,
        unjoin,
        help="remove a member from a federation",
        description="Run the unjoin-cluster flow: revoke the member's access, remove its "
        "registration and credentials block. Workloads propagated to it are kept unless "
        "--remove-workloads, which first moves its replicas to the others (Ready and in DNS "
        "before any of its own stop). It refuses, changing nothing, while a workload can run "
        "nowhere else or a placement names the member in clusters or weights; an unreachable "
        "member needs --force too. The report lists what was left behind in it.",
    )
    unjoin_parser.add_argument(
        "--remove-workloads",
        dest="keep_workloads",
        action="store_false",
        default=argparse.SUPPRESS,
        help="the same as --no-keep-workloads",
    )
    _command(
        sub,
        "rotate",
        RotateRequest,
        rotate,
        help="rotate a member's token",
        description="Run the rotate-credentials flow: mint a new token, verify it, save it in "
        "the member's block, then revoke the old one. The block never holds a broken token.",
    )
    _command(
        sub,
        "rebalance",
        RebalanceRequest,
        rebalance,
        help="rebalance the federated workloads across members",
        description="Run the rebalance-replicas flow: probe the members (health with "
        "hysteresis, free capacity), plan each FederatedDeployment, publish the plan, then "
        "scale up before scaling down. A run that finds nothing to change writes nothing.",
    )
    _command(
        sub,
        "taint",
        TaintRequest,
        taint,
        help="set or lift a member's taints (workloads that do not tolerate one stay off it)",
        description="Run the taint-member flow: set (--add KEY[=VALUE]:EFFECT) or lift "
        "(--remove KEY or KEY:EFFECT) a member's taints in the registry. The next rebalance "
        "acts on them: NoSchedule gives the member no new replicas of a workload that does not "
        "tolerate it; NoExecute moves them away, --max-moves a run, each new replica Ready "
        "before one is taken away. Workloads list what they tolerate in "
        "spec.placement.tolerations. Example: fleetflow taint --member us-east-1 --add "
        "maintenance=true:NoExecute",
    )
    _command(
        sub,
        "failover",
        FailoverRequest,
        failover,
        help="evacuate a region: survivors Ready first, then DNS, then drain",
        description="Run the regional-failover flow: fence the region (or --members), plan "
        "its replicas over the survivors by free room, scale them up and wait until Ready, "
        "switch each exposed workload's DNS to members with Ready replicas, then scale the "
        "region down where it answers. Each phase is recorded on a FederationOperation, so a "
        "rerun after a crash resumes; a second request for an evacuated region changes nothing.",
    )
    _command(
        sub,
        "failback",
        FailbackRequest,
        failback,
        help="return replicas and traffic to a recovered region",
        description="Run the regional-failback flow: lift the fence, then rebalance in rounds "
        "of at most --max-moves replicas per workload, each Ready before anything is taken "
        "away elsewhere; DNS lists the region again once its replicas are Ready.",
    )
    _command(
        sub,
        "migrate",
        MigrateRequest,
        migrate,
        help="move a stateful workload and its data to where it should live",
        description="Run the migrate-workload flow on a FederatedDeployment of kind "
        "StatefulSet that runs on one member: score every other member (data to move x the "
        "regions' cost, transfer time, datasets read across regions, room, residency, health; "
        "--dry-run prints that table and stops), make its claims on the target, copy with rsync "
        "while it serves until a round moves little, stop it once the final sync fits "
        "--downtime-budget, sync, compare every file's sha256 on both sides, start it on the "
        "target and switch its DNS. Any failure before the target starts rolls back: the source "
        "serves again with all its data. The source's claims stay until migrate-cleanup. Each "
        "phase is recorded, so a rerun resumes; --no-cutover stops after the pre-copy.",
    )
    _command(
        sub,
        "migrate-cleanup",
        CleanupRequest,
        migrate_cleanup,
        help="delete the source data a finished migration kept",
        description="Run the migrate-cleanup flow: delete the claims (and so their volumes) a "
        "finished migration kept on its source, once the workload does not run there.",
    )
