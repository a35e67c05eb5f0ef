"""``fleetflow plan``: one workload's replicas planned from flags; pure, no cluster, no Prefect."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping

from fleetflow.cli.console import say
from fleetflow.cli.options import Subparsers
from fleetflow.errors import PlacementError
from fleetflow.placement import ClusterCandidate, PlacementRequest, Plan, plan


def command(args: argparse.Namespace) -> int:
    request = build_request(
        args.total,
        parse_assignments(args.weight or [], "--weight"),
        mins=parse_assignments(args.min or [], "--min"),
        maxes=parse_assignments(args.max or [], "--max"),
        capacities=parse_assignments(args.capacity or [], "--capacity"),
        currents=parse_assignments(args.current or [], "--current"),
        unhealthy=args.unhealthy or [],
        capacity_aware=args.capacity_aware,
        workload=args.workload,
    )
    result = plan(request)
    say(json.dumps(plan_json(result)) if args.json else format_plan_table(result, request))
    return 0


def workload(value: str) -> str:
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"{value!r}: expected NAMESPACE/NAME, e.g. shop/web")
    return value


def plan_json(result: Plan) -> dict[str, object]:
    """The plan as ``{"clusters": {NAME: replicas, ...}, "unplaced": N}`` for ``--json``."""
    return {"clusters": dict(result.replicas), "unplaced": result.unplaced}


def format_plan_table(result: Plan, request: PlacementRequest) -> str:
    """A plain-text table: cluster, current, desired, reason; a total row last."""
    current = {c.name: c.current for c in request.clusters}
    rows = [("CLUSTER", "CURRENT", "DESIRED", "REASON")]
    rows += [
        (name, str(current.get(name, 0)), str(n), result.reasons.get(name, ""))
        for name, n in result.replicas.items()
    ]
    short = f"{result.unplaced} unplaced" if result.unplaced else ""
    rows.append(("total", str(sum(current.values())), str(sum(result.replicas.values())), short))
    width = [max(len(r[k]) for r in rows) for k in range(3)]
    return "\n".join(
        f"{a:<{width[0]}}  {b:>{width[1]}}  {c:>{width[2]}}  {d}".rstrip() for a, b, c, d in rows
    )


def parse_assignments(values: Iterable[str], flag: str) -> dict[str, int]:
    """Parse ``NAME=N`` options (N a whole number >= 0); the error names the flag and value."""
    out: dict[str, int] = {}
    for value in values:
        name, sep, number = value.partition("=")
        name, number = name.strip(), number.strip()
        if not sep or not name or not number.isdigit():
            raise PlacementError(
                f"{flag} {value!r}: expected NAME=N with N a whole number >= 0, e.g. us-east-1=3"
            )
        if name in out:
            raise PlacementError(f"{flag} {value!r}: {name} is given more than once")
        out[name] = int(number)
    return out


def build_request(
    total: int,
    weights: Mapping[str, int],
    *,
    mins: Mapping[str, int] | None = None,
    maxes: Mapping[str, int] | None = None,
    capacities: Mapping[str, int] | None = None,
    currents: Mapping[str, int] | None = None,
    unhealthy: Iterable[str] = (),
    fenced: Iterable[str] = (),
    capacity_aware: bool = False,
    workload: str | None = None,
) -> PlacementRequest:
    """A request from per-name options; the clusters are the weighted ones.

    Raises ``PlacementError`` naming any cluster an option mentions that has no weight.
    """
    known = set(weights)
    sick, fence = set(unhealthy), set(fenced)
    options: dict[str, Iterable[str]] = {
        "--min": mins or {},
        "--max": maxes or {},
        "--capacity": capacities or {},
        "--current": currents or {},
        "--unhealthy": sick,
        "--fenced": fence,
    }
    for flag, names in options.items():
        unknown = sorted(set(names) - known)
        if unknown:
            raise PlacementError(
                f"{flag}: unknown cluster {', '.join(unknown)}; "
                f"the clusters are those given a --weight: {', '.join(sorted(known)) or 'none'}"
            )
    return PlacementRequest(
        total=total,
        capacity_aware=capacity_aware,
        workload=workload,
        clusters=[
            ClusterCandidate(
                name=name,
                weight=weight,
                min=(mins or {}).get(name, 0),
                max=(maxes or {}).get(name),
                capacity=(capacities or {}).get(name),
                current=(currents or {}).get(name, 0),
                healthy=name not in sick,
                fenced=name in fence,
            )
            for name, weight in weights.items()
        ],
    )


def add_commands(sub: Subparsers) -> None:
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
        "--workload",
        type=workload,
        metavar="NAMESPACE/NAME",
        help="the workload to plan for: ties go by a stable hash of workload and cluster, as "
        "the rebalance flow breaks them (without it, to the first name)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"clusters": {NAME: N}, "unplaced": N}',
    )
    p.set_defaults(handler=command)
