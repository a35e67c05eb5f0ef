"""``fleetflow status``: every federated workload and object, with its state on each member,
read from the host (the states the last propagating run recorded). Writes nothing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import BaseModel, Field

from fleetflow.cli.console import say
from fleetflow.cli.federations import host_of
from fleetflow.cli.options import Subparsers, add_request_options, request_from
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import InvalidRequest, ResourceNotFound
from fleetflow.federated import federation_selector
from fleetflow.kube import ClusterApiClient, list_objects
from fleetflow.models import DnsLabel, FederationBlock, Request
from fleetflow.status import OBJECT, STATE_HELP, WORKLOAD, host_rows, rows_json, text_table


class StatusRequest(Request):
    """What ``fleetflow status`` shows."""

    federation: FederationBlock = Field(description="Federation block")
    namespace: DnsLabel | None = Field(
        default=None, description="Only this namespace of the host (default: every namespace)"
    )


class HostListing(BaseModel):
    """The host's federated workloads and objects, as listed (plain objects)."""

    workloads: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    notes: list[str] = Field(default_factory=list)


def read_host(api: ClusterApiClient, federation: str, namespace: str | None) -> HostListing:
    """List the federation's objects of both kinds in ``namespace`` (None: all). A host
    bootstrapped before FederatedObject existed has no such kind: its workloads alone, and a
    note that says so."""
    selector = federation_selector(federation)
    try:
        workloads = list_objects(api, API_VERSION, WORKLOAD, namespace, selector)
    except ResourceNotFound:
        raise InvalidRequest(
            f"the host {api.cluster!r} has no {WORKLOAD} kind: install the federation's "
            "control plane first (`fleetflow bootstrap`)"
        ) from None
    try:
        objects = list_objects(api, API_VERSION, OBJECT, namespace, selector)
    except ResourceNotFound:
        note = (
            f"the host {api.cluster!r} has no {OBJECT} kind yet (bootstrapped by an older "
            "fleetflow): workloads only; run `fleetflow bootstrap` again to add it"
        )
        return HostListing(workloads=workloads, objects=[], notes=[note])
    return HostListing(workloads=workloads, objects=objects)


def status(args: argparse.Namespace) -> int:
    request = request_from(args, StatusRequest)
    # Blocks read over the REST API: importing Prefect would cost more than the whole read.
    found = host_of(request.federation)
    listing = read_host(found.host, found.federation, request.namespace)
    rows = host_rows(listing.workloads, listing.objects)
    if args.json:
        say(rows_json(rows))
        for note in listing.notes:  # on stderr: stdout stays one JSON document
            print(f"note: {note}", file=sys.stderr, flush=True)
        return 0
    say(text_table(rows))
    for note in listing.notes:
        say(f"note: {note}")
    return 0


def _states() -> str:
    width = max(len(s.value) for s in STATE_HELP)
    return "\n".join(f"  {s.value:<{width}}  {text}" for s, text in STATE_HELP.items())


def add_commands(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "status",
        help="show every federated workload and object, with its state on each member",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read the federation's FederatedDeployments and FederatedObjects from its\n"
        "host and show, per member, the state the last rebalance run recorded: a table of\n"
        "workloads (replicas Ready/placed) and one of objects; a row with member '-' is\n"
        "about a workload or object as a whole. Writes nothing. The rebalance run\n"
        "publishes the same tables as its 'federation-status' artifact.",
        epilog="States:\n" + _states() + "\n\nExit status: 0 shown, 2 could not read (one line "
        "on stderr: an unknown federation, an unreachable host, no Prefect API).",
    )
    add_request_options(parser, StatusRequest)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print a JSON list, one object per row: namespace, kind, name, template_kind, "
        "member (null: the whole object), state, desired, ready, message",
    )
    parser.set_defaults(handler=status)
