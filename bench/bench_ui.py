"""The Prefect UI as the console, timed: the browser test's journey on the stack `fleetflow up`
runs (one Prefect server serving the API and the UI, a worker asking for runs every 10 s, its
default), with a federation of the test bed's three members.

For each run: the whole journey (open the UI, find the rebalance deployment, fill its custom-run
form, follow the run to Completed, its logs, its plan), and from the click on Submit to the
worker's first line about the run, the run's own first log line, and the run page showing
Completed. Screenshots go to a temporary directory, printed at the end.

Needs Debian's Chromium (/usr/bin/chromium) and Playwright for Python (the test extra). Run by
hand: .venv/bin/python bench/bench_ui.py (about 4 minutes; FLEETFLOW_BENCH_UI_RUNS=3 runs,
FLEETFLOW_BENCH_UI_PORT=4380 for the Prefect server).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("FLEETFLOW_BENCH_UI_PORT", "4380")
os.environ["FLEETFLOW_HOME"] = tempfile.mkdtemp(prefix="fleetflow-bench-")
os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{os.environ['FLEETFLOW_BENCH_UI_PORT']}/api"
os.environ["PREFECT_HOME"] = os.path.join(os.environ["FLEETFLOW_HOME"], "prefect")
# The journey is the browser test's own, so that the figures are those of what the suite checks.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kubernetes import client as k8s
from prefect.client.orchestration import get_client

from fleetflow.blocks.testbed import save_testbed_blocks
from fleetflow.cli.stack import federate_testbed
from fleetflow.kube import api_client, apply
from fleetflow.settings import settings
from fleetflow.stack import Stack, start, stop
from fleetflow.testbed import bed
from fleetflow.testbed.demo import federated_deployment
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.browser import (
    CustomRun,
    Outcome,
    Screens,
    chromium,
    describe,
    missing,
    run_logs,
    start_and_follow,
    timings,
)

PORT = int(os.environ["FLEETFLOW_BENCH_UI_PORT"])
RUNS = int(os.environ.get("FLEETFLOW_BENCH_UI_RUNS", "3"))
FEDERATION = "benchui"
NAMESPACE = "bench-ui"


def quiet(message: str) -> None:
    pass


def main() -> None:
    reason = missing()
    if reason:
        sys.exit(f"error: {reason}")
    stack = Stack.local(PORT)
    spec = TestbedSpec(base_port=settings().bench_base_port)
    members = [m.name for m in spec.members]
    weights = {members[0]: 2, **{m: 1 for m in members[1:]}}
    out = Path(tempfile.mkdtemp(prefix="fleetflow-bench-ui-"))
    started = start(stack, progress=quiet)
    try:
        bed.up(spec, progress=quiet)
        save_testbed_blocks(spec)
        federate_testbed(spec, FEDERATION)
        host = api_client(bed.credentials(spec.host))
        k8s.CoreV1Api(host).create_namespace({"metadata": {"name": NAMESPACE}})
        run = CustomRun(
            flow="rebalance-replicas",
            deployment="rebalance",
            block_fields={"Federation": FEDERATION},
            text_fields={"Namespace": NAMESPACE},
            number_fields={"Max Moves": 3},
        )
        outcome = Outcome(
            log_line=f"Finished in state Completed('rebalance {FEDERATION}",
            artifacts=["rebalance-plan", "rebalance-summary"],
            table="rebalance-plan",
            rows=[(f"{NAMESPACE}/web", m) for m in members],
        )
        results: list[dict[str, float]] = []
        blocked: list[str] = []
        with get_client(sync_client=True) as client:
            for i in range(RUNS):
                # One more replica each time: every run has something to write.
                apply(
                    host,
                    federated_deployment(
                        FEDERATION, "web", NAMESPACE, 4 + i, placement={"weights": weights}
                    ),
                )
                screens = Screens(out / f"run-{i + 1}")
                with (
                    tempfile.TemporaryDirectory(prefix="chromium-") as profile,
                    chromium(Path(profile), blocked) as context,
                ):
                    journey = start_and_follow(
                        context.new_page(), stack.ui_url, stack.api_url, run, outcome, screens
                    )
                figures = timings(journey, run_logs(client, journey.flow_run_id))
                results.append(figures)
                print(f"run {i + 1} of {RUNS}:\n{describe(figures)}", end="", flush=True)
        median = {name: statistics.median(r[name] for r in results) for name in results[0]}
        print(f"median of {RUNS}:\n{describe(median)}", end="")
        print(f"requests refused (they would leave the machine): {len(blocked)}")
        print(f"screenshots: {out}")
    finally:
        bed.down(progress=quiet)
        for name in reversed(started):
            stop(stack, name, progress=quiet)


if __name__ == "__main__":
    main()
