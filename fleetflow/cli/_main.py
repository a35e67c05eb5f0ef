"""The root of the ``fleetflow`` command: its parser, the dispatch to a command's handler, and
errors as one line on stderr (exit 2) instead of a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx
from prefect.settings import PREFECT_API_URL
from pydantic import ValidationError

from fleetflow.cli import autoscale, drill, failpoints, flows, plan, stack, status, testbed
from fleetflow.cli.console import error, quiet_exit_notes, track_lines
from fleetflow.cli.options import Handler
from fleetflow.errors import FleetflowError, prefect_overloaded


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="fleetflow",
        description="Kubernetes federation procedures as Prefect flows: bootstrap, join, "
        "unjoin, rotate credentials, rebalance across clusters, fail a region over and back, "
        "and drill it.",
        epilog="Exit status: 0 done, 1 a flow run failed (its log in Prefect has the details), "
        "2 the command could not start (bad option, unknown name, no Prefect API).",
    )
    sub = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack.add_commands(sub)
    flows.add_commands(sub)
    drill.add_commands(sub)
    plan.add_commands(sub)
    status.add_commands(sub)
    autoscale.add_commands(sub)
    testbed.add_commands(sub)
    failpoints.add_commands(sub)
    return root


def _reason(exc: ValidationError) -> str:
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    quiet_exit_notes()
    track_lines()
    try:
        return handler(args)
    except ValidationError as exc:
        error(_reason(exc))
    except FleetflowError as exc:
        error(str(exc))
    except httpx.HTTPStatusError as exc:  # a Prefect API call that the client gave up on
        error(str(prefect_overloaded(exc) or f"the Prefect API refused a request: {exc}"))
    except httpx.TransportError as exc:  # the Prefect API went away under a run
        why = str(exc) or type(exc).__name__
        error(
            f"the Prefect API at {PREFECT_API_URL.value()} did not answer ({why}): the run "
            "stopped where it was; once the API is back, the same command again carries on "
            "from there"
        )
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    return 2
