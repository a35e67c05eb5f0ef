"""``fleetflow plan``: one workload's replicas planned from flags; pure, no cluster, no Prefect."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from fleetflow.cli.console import say
from fleetflow.cli.options import Subparsers
from fleetflow.controlplane import REGION_LABEL
from fleetflow.errors import PlacementError
from fleetflow.placement import Candidate, ClusterCandidate, PlacementRequest, Plan
from fleetflow.scheduling import (
    AffinityGroup,
    Facts,
    Rules,
    Scheduled,
    SpreadConstraint,
    Taint,
    Toleration,
    schedule,
)

R = TypeVar("R", bound=BaseModel)


def command(args: argparse.Namespace) -> int:
    weights = parse_assignments(args.weight or [], "--weight")
    request = build_request(
        args.total,
        weights,
        mins=parse_assignments(args.min or [], "--min"),
        maxes=parse_assignments(args.max or [], "--max"),
        capacities=parse_assignments(args.capacity or [], "--capacity"),
        currents=parse_assignments(args.current or [], "--current"),
        unhealthy=args.unhealthy or [],
        capacity_aware=args.capacity_aware,
        workload=args.workload,
    )
    members = parse_members(weights, args.region or [], args.label or [], args.taint or [])
    rules = Rules(
        groups=[parse_group(g, weights) for g in args.group or []],
        spread=[parse_spread(s) for s in args.spread or []],
        tolerations=[parse_toleration(t) for t in args.toleration or []],
    )
    scheduled = schedule(
        request.total,
        [Candidate(**c.model_dump()) for c in request.clusters],
        members,
        rules,
        capacity_aware=request.capacity_aware,
        workload=request.workload,
    )
    result = scheduled.plan
    if args.json:
        say(json.dumps(plan_json(result)))
    elif args.explain:
        say(format_explained(scheduled, request, members))
    else:
        say(format_plan_table(result, request))
    return 0


def parse_members(
    weights: Mapping[str, int], regions: Iterable[str], labels: Iterable[str], taints: Iterable[str]
) -> dict[str, Facts]:
    """Each cluster's labels (``--region NAME=REGION``, ``--label NAME=KEY=VALUE``) and
    taints (``--taint NAME=KEY[=VALUE]:EFFECT``)."""
    found: dict[str, tuple[dict[str, str], list[Taint]]] = {n: ({}, []) for n in weights}

    def member(flag: str, value: str, shape: str) -> tuple[str, str]:
        name, sep, rest = value.partition("=")
        if not sep or not rest:
            raise PlacementError(f"{flag} {value!r}: expected {shape}")
        if name not in found:
            raise PlacementError(
                f"{flag} {value!r}: unknown cluster {name}; the clusters are those given a "
                f"--weight: {', '.join(sorted(found))}"
            )
        return name, rest

    for value in regions:
        name, region = member("--region", value, "NAME=REGION, e.g. us-east-1=us-east")
        found[name][0][REGION_LABEL] = region
    for value in labels:
        name, pair = member("--label", value, "NAME=KEY=VALUE, e.g. us-east-1=gpu=yes")
        key, sep, label = pair.partition("=")
        if not sep or not key:
            raise PlacementError(f"--label {value!r}: expected NAME=KEY=VALUE")
        found[name][0][key] = label
    for value in taints:
        name, text = member("--taint", value, "NAME=KEY[=VALUE]:EFFECT")
        found[name][1].append(Taint.parse(text))
    return {n: Facts(labels, taints) for n, (labels, taints) in found.items()}


def parse_group(value: str, weights: Mapping[str, int]) -> AffinityGroup:
    """``--group NAME=C1,C2``: an affinity group of those clusters; the order of the flags is
    the order of fallback."""
    name, sep, listed = value.partition("=")
    clusters = [c.strip() for c in listed.split(",") if c.strip()]
    if not sep or not name or not clusters:
        raise PlacementError(f"--group {value!r}: expected NAME=CLUSTER[,CLUSTER...]")
    unknown = sorted(set(clusters) - set(weights))
    if unknown:
        raise PlacementError(f"--group {value!r}: unknown cluster {', '.join(unknown)}")
    return AffinityGroup(name=name, clusters=tuple(clusters))


def parse_spread(value: str) -> SpreadConstraint:
    """``--spread BY=MIN[:MAX]``, e.g. ``region=2:3``."""
    by, sep, bounds = value.partition("=")
    low, _, high = bounds.partition(":")
    if not sep or not by or not low.isdigit() or (high and not high.isdigit()):
        raise PlacementError(f"--spread {value!r}: expected BY=MIN[:MAX], e.g. region=2:3")
    fields = {"spreadBy": by, "minGroups": int(low), "maxGroups": int(high) if high else None}
    return _rule(SpreadConstraint, fields, f"--spread {value!r}")


def parse_toleration(value: str) -> Toleration:
    """``--toleration KEY[=VALUE][:EFFECT]``: with a value it must equal the taint's."""
    body, _, effect = value.rpartition(":") if ":" in value else (value, "", "")
    key, has_value, wanted = body.partition("=")
    fields = {
        "key": key,
        "operator": "Equal" if has_value else "Exists",
        "value": wanted,
        "effect": effect or None,
    }
    return _rule(Toleration, fields, f"--toleration {value!r}")


def _rule(model: type[R], fields: Mapping[str, object], flag: str) -> R:
    """The rule a flag gives, or one line naming the flag and the first field at fault."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        why = first["msg"].removeprefix("Value error, ")
        raise PlacementError(f"{flag}: {where + ': ' if where else ''}{why}") from None


def format_explained(
    scheduled: Scheduled, request: PlacementRequest, members: Mapping[str, Facts]
) -> str:
    """The plan table, then why: what decided the whole plan, and each cluster's inputs."""
    lines = [format_plan_table(scheduled.plan, request), "", "why:"]
    lines += [f"  {note}" for note in scheduled.notes] or ["  weights, bounds and room only"]
    for c in request.clusters:
        facts = members[c.name]
        bits = [f"weight {c.weight}", f"min {c.min}"]
        bits += [f"max {c.max}"] if c.max is not None else []
        bits += [f"capacity {c.capacity}"] if c.capacity is not None else []
        bits += [
            f"region {v}" if k == REGION_LABEL else f"{k}={v}"
            for k, v in sorted(facts.labels.items())
        ]
        bits += [f"taint {t.text()}" for t in facts.taints]
        bits += [w for w, on in (("unhealthy", not c.healthy), ("fenced", c.fenced)) if on]
        lines.append(f"  {c.name}: {scheduled.plan.reasons[c.name]} ({', '.join(bits)})")
    return "\n".join(lines)


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
        "planner the rebalance flow uses: affinity groups in order, spread constraints, taints "
        "and tolerations, then Sainte-Laguë rounding (monotone, no Alabama paradox), mins and "
        "maxes, capacity caps, unhealthy clusters at zero, and stability against --current. "
        "--explain says why each cluster got its count. Exits 2 with a one-line reason when "
        "the request cannot be met. Example: fleetflow plan --total 6 --weight a=1 --weight "
        "b=1 --weight c=1 --region a=us --region b=us --region c=eu --group us=a,b --group "
        "eu=c --spread region=1:1 --explain",
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
    p.add_argument("--region", action="append", metavar="NAME=REGION", help="a cluster's region")
    p.add_argument(
        "--label",
        action="append",
        metavar="NAME=KEY=VALUE",
        help="a label of a cluster, for --spread by a label",
    )
    p.add_argument(
        "--taint",
        action="append",
        metavar="NAME=KEY[=VALUE]:EFFECT",
        help="a cluster's taint: NoSchedule (keeps what it runs, no new replicas) or NoExecute "
        "(its replicas move away) unless a --toleration matches",
    )
    p.add_argument(
        "--toleration",
        action="append",
        metavar="KEY[=VALUE][:EFFECT]",
        help="a taint the workload tolerates (without a value: any value of the key)",
    )
    p.add_argument(
        "--group",
        action="append",
        metavar="NAME=C1,C2",
        help="an affinity group; in the order given, the first that holds every replica is "
        "used, the next only when it cannot",
    )
    p.add_argument(
        "--spread",
        action="append",
        metavar="BY=MIN[:MAX]",
        help="cover at least MIN (at most MAX) values of BY: cluster, region, zone or a label "
        "key, e.g. region=2:3",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="after the table, say why: the group in use and why earlier ones were passed "
        "over, the spread covered, and each cluster's reason with its inputs",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"clusters": {NAME: N}, "unplaced": N}',
    )
    p.set_defaults(handler=command)
