"""``fleetflow failpoints``: every crash point of every procedure, read from the flows
themselves (each declares its steps), and a check of a ``FLEETFLOW_FAILPOINTS`` value."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil

from fleetflow import failpoints
from fleetflow.cli.console import say
from fleetflow.cli.options import Subparsers
from fleetflow.errors import InvalidRequest


def catalogue() -> dict[str, tuple[str, ...]]:
    """Every procedure's steps: each flow module is imported, and declares its own."""
    import fleetflow.flows as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    return failpoints.declared()


def checked(value: str) -> list[failpoints.Armed]:
    """The points ``value`` arms, each one a point of a procedure; raises InvalidRequest, in
    one line, for the first that is not."""
    procedures = catalogue()
    armed = failpoints.parse(value)
    for point in armed.values():
        if point.procedure not in procedures:
            raise InvalidRequest(
                f"{failpoints.ENV} arms {point.name}: no procedure {point.procedure!r}; "
                f"the procedures: {', '.join(sorted(procedures))}"
            )
    failpoints.check(armed, procedures)
    return list(armed.values())


def run(args: argparse.Namespace) -> int:
    procedures = catalogue()
    if unknown := [p for p in args.procedure if p not in procedures]:
        raise InvalidRequest(
            f"no procedure {unknown[0]!r}; the procedures: {', '.join(sorted(procedures))}"
        )
    if args.check is not None:
        say("; ".join(p.text() for p in checked(args.check)) or "nothing armed")
        return 0
    chosen = args.procedure or sorted(procedures)
    if args.json:
        say(json.dumps({p: failpoints.names(p) for p in chosen}, indent=2))
        return 0
    for procedure in chosen:
        say(f"{procedure}:")
        for step in procedures[procedure]:
            say(f"  {procedure}/{step}:{{{','.join(failpoints.WHEN)}}}")
    return 0


def add_commands(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "failpoints",
        help="list the crash points of every procedure (for crash tests)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List every named crash point, procedure by procedure, in the order a run\n"
        "passes them. Each step of a procedure has three: :before (nothing of it written),\n"
        ":write (just after one of its writes was acknowledged; :write@N the N-th) and\n"
        ":after (all of it written; a recorded phase not yet recorded). Arm them for one run\n"
        "with FLEETFLOW_FAILPOINTS, entries separated by ';':\n\n"
        "  FLEETFLOW_FAILPOINTS='failover/scaled-up:write@2=kill' fleetflow failover ...\n\n"
        "Actions: kill (SIGKILL of the process running the flow), raise (the step fails),\n"
        "sleep=SECONDS (the run waits there). Unset, the points do nothing. Writes nothing.",
        epilog="Exit status: 0 listed (or the value checked), 2 an unknown procedure or a value "
        "that names no point (one line on stderr).",
    )
    parser.add_argument("procedure", nargs="*", help="only these procedures (default: all)")
    parser.add_argument("--json", action="store_true", help="print {procedure: [point, ...]}")
    parser.add_argument(
        "--check",
        metavar="VALUE",
        help="check a FLEETFLOW_FAILPOINTS value against the points, and say what it arms",
    )
    parser.set_defaults(handler=run)
