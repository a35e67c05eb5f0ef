"""The whole crash matrix on a test bed of its own: every procedure, every crash point its
uninterrupted run passes (each step's :before and :after, and between its writes), each run
killed there by SIGKILL, rerun, and its end state compared with the uninterrupted run's
(``tests/integration/crashes.py`` says what is compared). Prints one line per case and a table of
points by procedure: passed, failed, time. Run by hand:

    .venv/bin/python bench/bench_crash_matrix.py [PROCEDURE ...] [--first N]

Exit status 1 when a case failed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from harness import bench_spec, testbed_and_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' crash harness

from fleetflow.settings import settings
from fleetflow.stack import Database
from fleetflow.testbed.postgres import postgres
from tests.integration.conftest import a_federation
from tests.integration.crash_scenarios import scenarios
from tests.integration.crashes import (
    LEASE_SECONDS,
    Case,
    baseline,
    crash_case,
    nothing_after_the_lease,
    overlap_case,
    prefect_server,
    restart_case,
    restart_host,
)


def _said(case: Case) -> None:
    verdict = "pass" if case.passed else "FAIL"
    print(f"  {case.point:48} {verdict} {case.seconds:5.1f}s {case.why}", flush=True)


RESTARTED_AT = {"failover": "failover/scaled-up:after", "migrate": "migrate/pre-copied:after"}


def _restarts(started: float) -> int:
    cases: list[Case] = []
    with (
        testbed_and_server(bench_spec()) as spec,
        a_federation(spec, join=True, dns=True, prefix="m") as fleet,
        tempfile.TemporaryDirectory() as scratch,
        postgres(settings().bench_base_port + 290) as pg,
    ):
        every = scenarios(fleet)
        expected = {p: baseline(every[p], spec)[0] for p in ("failover", "migrate", "rebalance")}
        databases = {
            "sqlite": f"sqlite+aiosqlite:///{Path(scratch) / 'prefect.db'}",
            "postgresql": Database(pg.url).prefect_url,
        }
        for procedure, point in RESTARTED_AT.items():
            for name, url in databases.items():
                with prefect_server(url, fleet, spec) as server:
                    label = f"Prefect server ({name}) restarted"
                    cases.append(
                        restart_case(
                            every[procedure],
                            spec,
                            point,
                            expected[procedure],
                            server.restart,
                            api_url=server.api_url,
                            label=label,
                        )
                    )
                _said(cases[-1])
        cases.append(
            restart_case(
                every["rebalance"],
                spec,
                "rebalance/scaled-down:before",
                expected["rebalance"],
                restart_host(spec),
                label="host apiserver restarted",
            )
        )
        _said(cases[-1])
        cases.append(
            restart_case(
                every["failover"],
                spec,
                "failover/ready:after",
                expected["failover"],
                restart_host(spec, away=LEASE_SECONDS + 2),
                label="host away longer than the lease",
                stopped=nothing_after_the_lease,
            )
        )
        _said(cases[-1])
    print(f"\nrestarts: {time.monotonic() - started:.0f}s")
    return 1 if any(not c.passed for c in cases) else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("procedure", nargs="*", help="only these (default: all)")
    parser.add_argument("--first", type=int, default=0, help="only each procedure's first N points")
    parser.add_argument(
        "--point", action="append", default=[], help="only this point (repeat for more)"
    )
    parser.add_argument(
        "--overlaps-only", action="store_true", help="only each procedure's two runs at once"
    )
    parser.add_argument(
        "--restarts",
        action="store_true",
        help="instead: the Prefect server (SQLite, PostgreSQL) restarted under a failover and a "
        "migration, the host's apiserver under a rebalance, and away longer than a failover's "
        "lease",
    )

    args = parser.parse_args()
    results: dict[str, list[Case]] = {}
    started = time.monotonic()
    if args.restarts:
        return _restarts(started)
    with testbed_and_server(bench_spec()) as spec:
        for procedure in args.procedure or list(scenarios("any")):
            # One federation per procedure: a failover's record is the federation's.
            fleet = scenarios("any")[procedure].fleet
            with (
                a_federation(spec, join=True, dns=True, prefix="m")
                if fleet
                else contextlib.nullcontext("none")
            ) as name:
                scenario = scenarios(name)[procedure]
                expected, points, took = baseline(scenario, spec)
                print(f"{procedure}: uninterrupted {took:.1f}s, {len(points)} points", flush=True)
                cases = results.setdefault(procedure, [])
                chosen = [p for p in points if p in args.point] if args.point else points
                if missing := [p for p in args.point if p not in points]:
                    print(f"  not passed by the uninterrupted run: {', '.join(missing)}")
                    print(f"  its points: {', '.join(points)}", flush=True)
                for point in [] if args.overlaps_only else chosen[: args.first or None]:
                    cases.append(crash_case(scenario, spec, point, expected))
                    _said(cases[-1])
                cases.append(overlap_case(scenario, spec, expected))
                _said(cases[-1])
    print("\n| procedure | points | passed | failed | time (s) |\n| --- | --- | --- | --- | --- |")
    for procedure, cases in results.items():
        failed = [c for c in cases if not c.passed]
        seconds = sum(c.seconds for c in cases)
        passed = len(cases) - len(failed)
        print(f"| {procedure} | {len(cases)} | {passed} | {len(failed)} | {seconds:.0f} |")
    print(f"\nwhole matrix: {time.monotonic() - started:.0f}s")
    return 1 if any(not c.passed for cs in results.values() for c in cs) else 0


if __name__ == "__main__":
    sys.exit(main())
