"""``fleetflow drill``: start a failover drill through the Prefect REST API, as any scheduler or
CI job would, and optionally wait for its verdict.

The drill runs on a worker from the ``failover-drill/drill`` deployment. ``create_flow_run``
with an idempotency key returns the same run for the same key, so a drill triggered twice (a
retried CI step) runs once. The same call with curl::

    curl -s "$PREFECT_API_URL/deployments/name/failover-drill/drill" | jq -r .id
    curl -s -X POST "$PREFECT_API_URL/deployments/$ID/create_flow_run" \\
      -H 'Content-Type: application/json' \\
      -d '{"idempotency_key": "drill-2026-11-25", "parameters": {"request":
           {"federation": "demo", "region": "eu-west"}}}'
"""

from __future__ import annotations

import argparse
import time

import httpx

from fleetflow.cli.console import error, say
from fleetflow.cli.options import Subparsers, add_request_options, request_from
from fleetflow.errors import UnknownName
from fleetflow.models import DrillRequest
from fleetflow.prefect_api import call

DEPLOYMENT = "failover-drill/drill"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def drill(args: argparse.Namespace) -> int:
    from fleetflow.cli.runs import check_blocks, prefect_api

    request = request_from(args, DrillRequest)
    with prefect_api() as api:
        check_blocks(request)
        _check_region(request)
        with httpx.Client(base_url=api.rstrip("/") + "/", timeout=30) as http:
            run = _start(http, request, args.idempotency_key)
            ui = api.removesuffix("/api").rstrip("/")
            say(f"drill started: flow run {run['name']!r} ({ui}/runs/flow-run/{run['id']})")
            if not args.wait:
                return 0
            state = _wait(http, run["id"], args.timeout)
            verdict = _verdict(http, run["id"]) if state in FINAL else None
    if state not in FINAL:
        # The run goes on without us: say so, not that it ended.
        error(
            f"stopped waiting after {args.timeout:g}s; the drill is still {state}: follow it at "
            f"{ui}/runs/flow-run/{run['id']}, or wait longer with --timeout"
        )
        return 1
    say(verdict or f"(no verdict published; the run ended {state})")
    if state != "COMPLETED":
        error(f"the drill ended {state}")
        return 1
    return 0


def _check_region(request: DrillRequest) -> None:
    """A region no member is in is refused here, in one line, before a run exists (the run
    would only fail with it, after waiting for the deployment's slot)."""
    from fleetflow.blocks.loading import load_federation, load_host
    from fleetflow.failover import evacuation
    from fleetflow.tasks.host import list_members

    federation = load_federation(request.federation)
    host = load_host(federation)
    evacuation(list_members.fn(host, federation.namespace, federation.name), request.region, [])


def _start(http: httpx.Client, request: DrillRequest, key: str | None) -> dict[str, str]:
    found = call(http, "GET", f"deployments/name/{DEPLOYMENT}")
    if found.status_code == 404:
        raise UnknownName(
            f"no deployment {DEPLOYMENT}: apply deployments/prefect.yaml (`fleetflow up` does)"
        )
    body: dict[str, object] = {"parameters": {"request": request.model_dump(mode="json")}}
    if key:
        body["idempotency_key"] = key
    created = call(http, "POST", f"deployments/{found.json()['id']}/create_flow_run", json=body)
    run: dict[str, str] = created.json()
    return run


def _wait(http: httpx.Client, run_id: str, timeout: float) -> str:
    """Poll the run until it ends; its final state type."""
    deadline = time.monotonic() + timeout
    while True:
        state = (call(http, "GET", f"flow_runs/{run_id}").json().get("state") or {}).get("type")
        if state in FINAL or time.monotonic() > deadline:
            return str(state)
        time.sleep(2)


def _verdict(http: httpx.Client, run_id: str) -> str | None:
    found = call(
        http,
        "POST",
        "artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [run_id]}, "key": {"any_": ["drill-verdict"]}}},
    ).json()
    return str(found[0]["data"]) if found else None


def add_commands(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "drill",
        help="start a failover drill through the Prefect API",
        description="Create a run of the failover-drill deployment through the Prefect REST "
        "API (a worker runs it): inject a fault into the region (test bed) or only fence it, "
        "fail over, heal, fail back, and publish a verdict. Prints the run's UI address; with "
        "--wait, the verdict, exiting 1 when the drill failed. The same --idempotency-key twice "
        "starts one run.",
    )
    add_request_options(parser, DrillRequest)
    parser.add_argument("--wait", action="store_true", help="wait for the verdict and print it")
    parser.add_argument(
        "--idempotency-key", help="the same key starts one run, however often it is sent"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds --wait waits (default: 900)"
    )
    parser.set_defaults(handler=drill)
