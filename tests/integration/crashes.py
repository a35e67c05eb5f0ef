"""The crash matrix: each procedure run with one of its crash points armed to SIGKILL it, rerun
as a user would, and its end state compared with an uninterrupted run's.

A case: the scenario's start state in a namespace (or federation) of its own; the procedure run
by the ``fleetflow`` command with ``FLEETFLOW_FAILPOINTS=<point>=kill`` (it must die there: a
point the run never reached tests nothing and fails the case); while it is down, the workloads'
Ready replicas sampled against their floor; the killed run's leases left to lapse; the same
request run again; then the end state read (host objects, every member's objects with their
replicas, owners and finalizers, the operation records' phases, the leases, the blocks, the DNS
server's answers), names made neutral, and compared with what an uninterrupted run of the same
scenario left. The points come from the uninterrupted run itself (``failpoints.traced``): every
``:before`` and ``:after`` it passed, and its writes' points after the first write of a step and
before its last.

``tests/integration/test_crash_matrix.py`` runs a sample of the riskiest points;
``bench/bench_crash_matrix.py`` runs them all and prints the table. The scenarios are in
``crash_scenarios.py``, what an end state holds in ``crash_state.py``; the cases are run here.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL

from fleetflow import failpoints
from fleetflow.blocks import Federation, KubeCluster
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import FleetflowError, InvalidRequest
from fleetflow.kube import get
from fleetflow.lease import LEASE_API, Lease
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from tests.integration.crash_scenarios import Scenario
from tests.integration.crash_state import (
    World,
    answers,
    end_state,
    floors,
    listed,
    ready_totals,
    ready_totals_on,
)

LEASE_SECONDS = 3
"""The killed run's leases lapse this soon (its own process reads it): the rerun waits less."""


@dataclass
class Case:
    """What one crash case found."""

    point: str
    passed: bool
    seconds: float
    why: str = ""


def points_of(trace: list[str]) -> list[str]:
    """The crash cases an uninterrupted run's trace gives, in the order it passed them: each
    step's ``:before`` and ``:after``, and of its ``:write@N`` points the first (when another
    write follows) and the one before its last write (when that is not the first)."""
    writes: dict[str, int] = {}
    for point in trace:
        if ":write@" in point:
            name, count = point.rsplit("@", 1)
            writes[name] = max(writes.get(name, 0), int(count))
    cases: list[str] = []
    for point in trace:
        if ":write@" not in point:
            cases.append(point)
            continue
        name, count = point.rsplit("@", 1)
        n, last = int(count), writes[name]
        if n < last and (n == 1 or n == last - 1):
            cases.append(point)
    return list(dict.fromkeys(cases))


def command_env(point: str | None) -> dict[str, str]:
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    env["FLEETFLOW_LEASE_DURATION"] = str(LEASE_SECONDS)
    env.pop(failpoints.ENV, None)
    if point is not None:
        env[failpoints.ENV] = f"{point}=kill"
    return env


def run_command(argv: list[str], point: str | None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=command_env(point), capture_output=True, text=True, timeout=600)


def leases_lapsed(world: World) -> None:
    """Wait until no lease of the federation is held by a live-looking holder."""

    def held() -> list[str]:
        now = datetime.now(UTC)
        return [
            o["metadata"]["name"]
            for o in listed(world.host(), LEASE_API, "Lease", world.system)
            if (lease := Lease.from_object(o)).holder and not lease.expired(now)
        ]

    poll_until(
        held,
        lambda h: not h,
        timeout=LEASE_SECONDS * 4 + 15,
        interval=0.5,
        waiting_for="the killed run's leases to lapse",
    )


class Sampler(threading.Thread):
    """Samples Ready replicas while the run is down: the lowest seen, per workload."""

    def __init__(self, world: World) -> None:
        super().__init__(daemon=True)
        self.world, self.lowest, self._halt = world, {}, threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            with contextlib.suppress(Exception):
                for name, ready in ready_totals(self.world).items():
                    self.lowest[name] = min(self.lowest.get(name, ready), ready)
            self._halt.wait(0.3)

    def stop(self) -> dict[str, int]:
        self._halt.set()
        self.join(timeout=10)
        return self.lowest


def baseline(scenario: Scenario, testbed: TestbedSpec) -> tuple[dict[str, Any], list[str], float]:
    """The scenario run once uninterrupted (in this process, its points traced): its end
    state, the crash points it passed, and its time."""
    with scenario.world(testbed) as world:
        scenario.prepare(world)
        started = time.monotonic()
        with failpoints.traced() as trace:
            scenario.rerun(world)
        took = time.monotonic() - started
        state = end_state(world, scenario.records)
        scenario.restore(world)
    # The write points chosen over the whole trace: a nested step's last write decides which
    # of its writes are cases, whichever are named.
    own = f"{scenario.procedure}/"
    return state, [p for p in points_of(trace) if p.startswith(own) or p in scenario.nested], took


def crash_case(
    scenario: Scenario, testbed: TestbedSpec, point: str, expected: dict[str, Any]
) -> Case:
    """Kill the run at ``point``, rerun it, compare the end state with ``expected``."""
    started = time.monotonic()
    lowest: dict[str, int] = {}
    with scenario.world(testbed) as world:
        scenario.prepare(world)
        floor = floors(world) if scenario.floor else {}
        try:
            killed = run_command(scenario.argv(world), point)
            if killed.returncode != -9:
                said = (killed.stderr.strip().splitlines() or ["no output"])[-1]
                why = f"not killed there (exit {killed.returncode}: {said})"
                return Case(point, False, time.monotonic() - started, why)
            sampler = Sampler(world)
            sampler.start()
            try:
                leases_lapsed(world)
            finally:
                lowest = sampler.stop()
            if failed := rerun(scenario, world):
                return Case(point, False, time.monotonic() - started, failed)
            state = end_state(world, scenario.records)
        finally:
            scenario.restore(world)  # whatever happened: the next case starts from the same
    low = {n: (lowest[n], f) for n, f in floor.items() if lowest.get(n, f) < f}
    why = [f"below the floor while down (lowest, floor): {low}"] if low else []
    return _verdict(point, started, why, expected, state)


def overlap_case(scenario: Scenario, testbed: TestbedSpec, expected: dict[str, Any]) -> Case:
    """Start the command twice at once (a double click, a retried CI step, the schedule beside a
    person): each run finishes or refuses in one line, never both act at once; a user reruns
    it once if neither finished; the end state is an uninterrupted run's."""
    started = time.monotonic()
    with scenario.world(testbed) as world:
        scenario.prepare(world)
        try:
            argv, env = scenario.argv(world), command_env(None)
            # Their output in files, not pipes: a run that logs more than a pipe holds would
            # wait for a reader that is waiting for the other run.
            with tempfile.TemporaryFile() as one, tempfile.TemporaryFile() as two:
                runs = [
                    subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=out)
                    for out in (one, two)
                ]
                codes = [r.wait(timeout=600) for r in runs]
                outcomes = [(c, _read(f)) for c, f in zip(codes, (one, two), strict=True)]
            said = "; ".join(f"exit {c}: {_last(err)[:200]}" for c, err in outcomes)
            if all(code != 0 for code, _ in outcomes) and (failed := rerun(scenario, world)):
                return Case("two at once", False, time.monotonic() - started, f"{failed} ({said})")
            state = end_state(world, scenario.records)
        finally:
            scenario.restore(world)
    why = [
        f"a run exited {code} with no one-line reason: {err.strip()[-300:]}"
        for code, err in outcomes
        if code != 0 and "error: " not in _last(err)
    ]
    case = _verdict("two at once", started, why, expected, state)
    return case if case.passed else Case(case.point, False, case.seconds, f"{case.why} ({said})")


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


def _last(output: str) -> str:
    return (output.strip().splitlines() or [""])[-1]


def restart_case(
    scenario: Scenario,
    testbed: TestbedSpec,
    point: str,
    expected: dict[str, Any],
    restart: Callable[[], None],
    *,
    api_url: str | None = None,
    label: str = "restart",
    stopped: Callable[[World], str | None] = lambda world: None,
) -> Case:
    """Hold the run at ``point`` (``sleep``), ``restart`` something under it (the Prefect
    server the run reports to, at ``api_url``; the host's apiserver), and let it go on: it
    finishes, or stops with a one-line reason; a user reruns it then. The end state is an
    uninterrupted run's. ``stopped`` says what is wrong with what a run that stopped left
    (before the rerun), or None."""
    started = time.monotonic()
    left: str | None = None
    with scenario.world(testbed) as world:
        scenario.prepare(world)
        try:
            env = command_env(None)
            env[failpoints.ENV] = f"{point}=sleep=2"
            if api_url is not None:
                env["PREFECT_API_URL"] = api_url
            run = subprocess.Popen(
                scenario.argv(world),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            said: list[str] = []
            reader = threading.Thread(target=lambda: said.extend(run.stderr or []), daemon=True)
            reader.start()
            poll_until(
                lambda: any(line.startswith(f"failpoint {point}") for line in said),
                bool,
                timeout=120,
                interval=0.1,
                waiting_for=f"the run to reach {point}",
            )
            restart()
            code = run.wait(timeout=600)
            reader.join(timeout=10)
            last = said[-1].strip() if said else ""
            if code != 0:
                left = stopped(world)
                leases_lapsed(world)
                if failed := rerun(scenario, world):
                    return Case(f"{label} at {point}", False, time.monotonic() - started, failed)
            state = end_state(world, scenario.records)
        finally:
            scenario.restore(world)
    why = []
    if code != 0 and "error: " not in last:
        why.append(f"the run exited {code} with no one-line reason: {''.join(said)[-400:]}")
    if left:
        why.append(f"the stopped run left {left}")
    outcome = "finished" if code == 0 else f"stopped: {last[:160]}"
    return _verdict(f"{label} at {point} ({outcome})", started, why, expected, state)


@dataclass
class Server:
    """A Prefect server of a case's own, on the session's PostgreSQL or a SQLite file."""

    api_url: str
    restart: Callable[[], None]


@contextlib.contextmanager
def prefect_server(database: str | None, federation: str, testbed: TestbedSpec) -> Iterator[Server]:
    """Another server process: on the session's database (the same blocks), or on a database of
    its own (``database``, a SQLAlchemy URL: a SQLite file, a PostgreSQL; the federation's
    blocks copied into it). ``restart`` stops it and starts it again on its port, its data
    kept."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL, temporary_settings

    from fleetflow.blocks.loading import flows_block_name

    kept = [Federation.load(federation)]
    saved = [flows_block_name(federation), *(f"{federation}-{m.name}" for m in testbed.members)]
    clusters = [(n, KubeCluster.load(n)) for n in saved]
    own = {PREFECT_SERVER_DATABASE_CONNECTION_URL: database} if database else {}
    with temporary_settings(updates=own):
        server = SubprocessASGIServer(port=_free_port())
        server.start(timeout=120)

        def restart() -> None:
            server.stop()
            time.sleep(1)  # down, not merely restarting: the run's calls meet a closed port
            server.start(timeout=120)

        try:
            if database:
                with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
                    _copied(kept[0]).save(federation, overwrite=True)
                    for name, block in clusters:
                        _copied(block).save(name, overwrite=True)
            yield Server(server.api_url, restart)
        finally:
            server.stop()


def _copied(block: Block) -> Block:
    """The block's fields in a new block: the loaded one remembers its document's id on the
    server it came from, and saving it elsewhere would update that id there."""
    return type(block)(**{name: getattr(block, name) for name in type(block).model_fields})


def _free_port() -> int:
    import socket

    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def restart_host(testbed: TestbedSpec, away: float = 1) -> Callable[[], None]:
    """Kill the host's kube-apiserver and start it again ``away`` seconds later (etcd keeps
    its data)."""

    def restart() -> None:
        bed.fault(testbed.host, bed.Fault.KILL_APISERVER, progress=lambda m: None)
        time.sleep(away)
        bed.fault(testbed.host, bed.Fault.START_CLUSTER, progress=lambda m: None)

    return restart


def nothing_after_the_lease(world: World) -> str | None:
    """What a failover that lost its lease once its survivors were Ready wrote after: no record
    of the Ready phase or any after it, no traffic moved, nothing drained."""
    region = world.testbed.members[-1]
    op = get(
        world.host(), API_VERSION, "FederationOperation", f"failover-{region.region}", world.system
    )
    steps = [s["name"] for s in (op.get("status") or {}).get("steps") or []]
    if set(steps) & {"ready", "traffic-switched", "drained"}:
        return f"steps recorded after the lease was lost: {steps}"
    if ready_totals_on(world, region.name).get("web", 0) == 0:
        return f"{region.name} drained"
    if region.ingress_address not in answers(world, world.host()).get(f"web-{world.namespace}", []):
        return f"traffic moved off {region.name}"
    return None


def _verdict(
    point: str, started: float, why: list[str], expected: dict[str, Any], state: dict[str, Any]
) -> Case:
    """The case's outcome: every reason found, and the end state against the expected one."""
    if state != expected:
        why = [*why, f"end state differs: {_difference(expected, state)}"]
    return Case(point, not why, time.monotonic() - started, "; ".join(why))


def rerun(scenario: Scenario, world: World) -> str | None:
    """Run the request again, as a user would after the crash; why it failed, or None. A
    rerun refused as having nothing to do (the killed run had made every write: an unjoin of
    a member no longer there) is judged by the end state it leaves, like any other."""
    try:
        scenario.rerun(world)
    except InvalidRequest:
        return None
    except FleetflowError as exc:
        return f"the rerun failed: {exc}"
    return None


def _difference(expected: Any, got: Any, at: str = "") -> str:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted(set(expected) | set(got)):
            if expected.get(key) != got.get(key):
                return _difference(expected.get(key), got.get(key), f"{at}/{key}")
    return f"{at or '/'}: expected {expected!r}, got {got!r}"
