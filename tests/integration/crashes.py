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
``bench/bench_crash_matrix.py`` runs them all and prints the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL

from fleetflow import failpoints
from fleetflow.blocks import Federation, KubeCluster
from fleetflow.controlplane import API_VERSION, LABEL_FEDERATION
from fleetflow.errors import (
    ClusterError,
    ClusterForbidden,
    ClusterThrottled,
    ClusterUnauthorized,
    FleetflowError,
    InvalidRequest,
    ResourceNotFound,
)
from fleetflow.kube import ClusterApiClient, api_client, get, list_objects
from fleetflow.lease import LEASE_API, Lease
from fleetflow.membership import member_manifests, names
from fleetflow.operations import Phase as OperationPhase
from fleetflow.polling import poll_until
from fleetflow.resolve import lookup
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.testbed.volumes import claim_directories, seed
from tests.integration.conftest import a_federation, delete_namespace

LEASE_SECONDS = 3
FLEETFLOW = str(Path(sys.executable).with_name("fleetflow"))
"""The command a user types, from this environment."""
"""The killed run's leases lapse this soon (its own process reads it): the rerun waits less."""

MEMBER_KINDS = (
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)


MARKS = {p.value for p in OperationPhase}
"""What a record's steps also hold besides phases: how a run ended (Failed, with why)."""


def admin(cluster: str, timeout: float = 5.0) -> ClusterApiClient:
    return api_client(bed.credentials(cluster).model_copy(update={"request_timeout": timeout}))


@dataclass
class World:
    """Where one case runs: a federation (with its host namespace) and a namespace of its own."""

    testbed: TestbedSpec
    federation: str
    namespace: str

    @property
    def system(self) -> str:
        return f"{self.federation}-system"

    def host(self) -> ClusterApiClient:
        return admin(self.testbed.host)


@dataclass
class Scenario:
    """One procedure's crash cases: how to set up its start, the command a user types, the
    same request run again in this process, and how to undo what the run did."""

    procedure: str
    world: Callable[[TestbedSpec], contextlib.AbstractContextManager[World]]
    prepare: Callable[[World], None]
    command: Callable[[World], list[str]]
    rerun: Callable[[World], object]
    restore: Callable[[World], None] = lambda world: None
    floor: bool = True
    """Whether every workload keeps at least its replicas Ready while the run is down."""
    fleet: bool = True
    """Whether its cases share a federation with every member joined (else each case makes
    one of its own, and no other federation may hold the members meanwhile)."""
    records: tuple[str, ...] = ()
    """The operation records its end state holds (name prefixes): those it writes, not the
    ones other procedures left in a shared federation."""


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


def _neutral(state: Any, world: World) -> Any:
    text = json.dumps(state, sort_keys=True)
    text = text.replace(world.namespace, "NAMESPACE").replace(world.federation, "FEDERATION")
    return json.loads(text)


def _owners(meta: dict[str, Any]) -> list[str]:
    return sorted(f"{o['kind']}/{o['name']}" for o in meta.get("ownerReferences") or [])


def _object(obj: dict[str, Any]) -> dict[str, Any]:
    meta, spec = obj["metadata"], obj.get("spec") or {}
    found: dict[str, Any] = {
        "owners": _owners(meta),
        "finalizers": sorted(meta.get("finalizers") or []),
    }
    if "replicas" in spec:
        found["replicas"] = spec["replicas"]
    return found


def _listed(
    api: ClusterApiClient,
    version: str,
    kind: str,
    namespace: str | None,
    selector: str | None = None,
) -> list[dict[str, Any]]:
    for _ in range(40):  # a kind just established answers 429 for a moment
        try:
            found = list_objects(api, version, kind, namespace, selector)
            # Being deleted (a Foreground deletion waits for its pods): as good as gone, and
            # how long it takes is the cluster's business, not the run's.
            return [o for o in found if not o["metadata"].get("deletionTimestamp")]
        except ResourceNotFound:  # the kind is not served (the host before bootstrap)
            return []
        except ClusterThrottled:
            time.sleep(0.25)
    return list_objects(api, version, kind, namespace, selector)


def end_state(world: World, records: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the federation looks like after a run, names made neutral; of the operation
    records, those named with a ``records`` prefix."""
    host, selector = world.host(), f"{LABEL_FEDERATION}={world.federation}"
    state: dict[str, Any] = {"host": {}, "members": {}, "blocks": {}, "dns": {}}
    for kind in ("FederatedDeployment", "FederatedObject"):
        for o in _listed(host, API_VERSION, kind, world.namespace):
            state["host"][f"{kind}/{o['metadata']['name']}"] = _object(o)
    for o in _listed(host, API_VERSION, "MemberCluster", world.system):
        spec = o.get("spec") or {}
        state["host"][f"MemberCluster/{o['metadata']['name']}"] = {
            "fenced": bool(spec.get("fenced")),
            "taints": spec.get("taints") or [],
            "namespaces": spec.get("namespaces") or [],
        }
    for o in _listed(host, API_VERSION, "FederationOperation", world.system):
        name = o["metadata"]["name"]
        if _elsewhere(name, world) or not any(name.startswith(r) for r in records):
            continue  # an earlier case's migration's record, or another procedure's
        status = o.get("status") or {}
        # A run that failed leaves a "Failed" entry (with why) among the steps, its history:
        # the phases themselves must each be there once, in order.
        steps = [s["name"] for s in status.get("steps") or [] if s["name"] not in MARKS]
        state["host"][f"FederationOperation/{o['metadata']['name']}"] = {
            "phase": status.get("phase"),
            "steps": steps,
        }
    # Every lease released, or lapsed (a killed run's lease no later run needed is free all
    # the same): which leases exist depends on what ran before in a shared federation.
    now = datetime.now(UTC)
    state["host"]["held leases"] = sorted(
        o["metadata"]["name"]
        for o in _listed(host, LEASE_API, "Lease", world.system)
        if (lease := Lease.from_object(o)).holder and not lease.expired(now)
    )
    for member in world.testbed.members:
        api, found = admin(member.name), {}
        with contextlib.suppress(ClusterError):  # a member that is down has no state to read
            for version, kind in MEMBER_KINDS:
                for o in _listed(api, version, kind, world.namespace, selector):
                    found[f"{kind}/{o['metadata']['name']}"] = _object(o)
            for m in member_manifests(world.federation):
                meta = m["metadata"]
                with contextlib.suppress(ResourceNotFound):
                    live = get(api, m["apiVersion"], m["kind"], meta["name"], meta.get("namespace"))
                    if not live["metadata"].get("deletionTimestamp"):  # going: as good as gone
                        found[f"{m['kind']}/{meta['name']}"] = "present"
            tokens = k8s.CoreV1Api(api).list_namespaced_secret(
                names(world.federation).namespace,
                field_selector="type=kubernetes.io/service-account-token",
            )
            found["token-secrets"] = len(tokens.items)
        state["members"][member.name] = found
    state["data"] = _data(world)
    state["blocks"] = _blocks(world)
    state["dns"] = _answers(world, host)
    return _neutral(state, world)


def _elsewhere(record: str, world: World) -> bool:
    """Whether an operation record is about a workload of another case's namespace (a
    migration's is named for its namespace; a failover's is the federation's own)."""
    return "crash-" in record and world.namespace not in record


def _data(world: World) -> dict[str, Any]:
    """Every member's claims in the namespace (owners, finalizers) and, for those bound, the
    sha256 of every file in them: a migration's copy, and its source kept until cleanup."""
    found: dict[str, Any] = {}
    for member in world.testbed.members:
        api, claims = admin(member.name), {}
        with contextlib.suppress(ClusterError):
            for o in _listed(api, "v1", "PersistentVolumeClaim", world.namespace):
                claims[o["metadata"]["name"]] = _object(o)
            for workload in {n.rsplit("-", 1)[0].split("-", 1)[1] for n in claims}:
                for claim, root in claim_directories(api, world.namespace, workload).items():
                    claims[claim]["files"] = digests(root)
        if claims:
            found[member.name] = claims
    return _labelled(found)


def _labelled(data: dict[str, Any]) -> dict[str, Any]:
    """File digests named by first appearance (member, claim, path in order): what a case
    compares is which copies hold the same bytes (a copy its source's, a source unchanged),
    not the bytes themselves, which a seed draws afresh."""
    labels: dict[str, str] = {}
    for member in sorted(data):
        for claim in sorted(data[member]):
            files = data[member][claim].get("files")
            if files is None:
                continue
            for path in sorted(files):
                files[path] = labels.setdefault(files[path], f"content-{len(labels) + 1}")
    return data


def digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path: computed here, not by fleetflow."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(p for p in root.rglob("*") if p.is_file())
    }


def _blocks(world: World) -> dict[str, Any]:
    try:
        federation = Federation.load(world.federation)
    except ValueError:
        return {"federation": None}
    found: dict[str, Any] = {"federation": sorted(federation.member_clusters)}
    for name in federation.member_clusters:
        try:
            block = KubeCluster.load(name)
        except ValueError:
            found[name] = None
            continue
        token = block.token.get_secret_value() if block.token else ""
        found[name] = {"joined_as": block.joined_as, "token": _works(block) if token else None}
    return found


def _works(block: KubeCluster) -> bool:
    """Whether the block's token is accepted by its cluster (a rotation must leave one that
    is): refused as unauthenticated, or only forbidden."""
    try:
        k8s.CoreV1Api(api_client(block.credentials())).list_namespace(limit=1)
    except ClusterUnauthorized:
        return False
    except ClusterForbidden:
        return True
    return True


def _answers(world: World, host: ClusterApiClient) -> dict[str, list[str]]:
    server = f"127.0.0.1:{world.testbed.dns_ports().dns}"
    answers = {}
    for o in _listed(host, API_VERSION, "FederatedDeployment", world.namespace):
        hostname = ((o.get("spec") or {}).get("dns") or {}).get("hostname")
        if hostname:
            answers[hostname] = lookup(f"{hostname}.{world.testbed.dns_zone}", server).targets
    return answers


def ready_totals(world: World) -> dict[str, int]:
    """Ready replicas of each workload in the namespace, over the members that answer."""
    return ready_totals_on(world, *(m.name for m in world.testbed.members))


def ready_totals_on(world: World, *members: str) -> dict[str, int]:
    """Ready replicas of each workload in the namespace, over these members (those that answer)."""
    totals: dict[str, int] = {}
    for member in members:
        with contextlib.suppress(ClusterError):
            for version, kind in MEMBER_KINDS[:2]:
                for o in _listed(admin(member, 2.0), version, kind, world.namespace):
                    name = o["metadata"]["name"]
                    ready = (o.get("status") or {}).get("readyReplicas", 0)
                    totals[name] = totals.get(name, 0) + ready
    return totals


def floors(world: World) -> dict[str, int]:
    """Each federated workload's replicas: what must stay Ready while nothing is down."""
    return {
        o["metadata"]["name"]: (o.get("spec") or {}).get("replicas", 0)
        for o in _listed(world.host(), API_VERSION, "FederatedDeployment", world.namespace)
    }


def command_env(point: str | None) -> dict[str, str]:
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    env["FLEETFLOW_LEASE_DURATION"] = str(LEASE_SECONDS)
    env.pop(failpoints.ENV, None)
    if point is not None:
        env[failpoints.ENV] = f"{point}=kill"
    return env


def run_command(argv: list[str], point: str | None) -> subprocess.CompletedProcess[str]:
    command = [FLEETFLOW, *argv]
    return subprocess.run(
        command, env=command_env(point), capture_output=True, text=True, timeout=600
    )


def leases_lapsed(world: World) -> None:
    """Wait until no lease of the federation is held by a live-looking holder."""

    def held() -> list[str]:
        now = datetime.now(UTC)
        return [
            o["metadata"]["name"]
            for o in _listed(world.host(), LEASE_API, "Lease", world.system)
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
    return state, points_of([p for p in trace if p.startswith(f"{scenario.procedure}/")]), took


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
            killed = run_command(scenario.command(world), point)
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
    command = [FLEETFLOW]
    with scenario.world(testbed) as world:
        scenario.prepare(world)
        try:
            argv, env = [*command, *scenario.command(world)], command_env(None)
            runs = [
                subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(2)
            ]
            outcomes = [(r.wait(timeout=600), r.communicate()[1].decode()) for r in runs]
            if all(code != 0 for code, _ in outcomes) and (failed := rerun(scenario, world)):
                return Case("two at once", False, time.monotonic() - started, failed)
            state = end_state(world, scenario.records)
        finally:
            scenario.restore(world)
    why = [
        f"a run exited {code} with no one-line reason: {err.strip()[-300:]}"
        for code, err in outcomes
        if code != 0 and "error: " not in (err.strip().splitlines() or [""])[-1]
    ]
    return _verdict("two at once", started, why, expected, state)


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
    command = [FLEETFLOW]
    left: str | None = None
    with scenario.world(testbed) as world:
        scenario.prepare(world)
        try:
            env = command_env(None)
            env[failpoints.ENV] = f"{point}=sleep=2"
            if api_url is not None:
                env["PREFECT_API_URL"] = api_url
            run = subprocess.Popen(
                [*command, *scenario.command(world)],
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
    if region.ingress_address not in _answers(world, world.host()).get(
        f"web-{world.namespace}", []
    ):
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


@contextlib.contextmanager
def namespace_in(testbed: TestbedSpec, federation: str) -> Iterator[World]:
    """A namespace of its own in the host, in a federation that outlives it; deleted after."""
    name = f"crash-{uuid.uuid4().hex[:6]}"
    k8s.CoreV1Api(admin(testbed.host)).create_namespace({"metadata": {"name": name}})
    try:
        yield World(testbed, federation, name)
    finally:
        delete_namespace(testbed, name)


def shared(federation: str) -> Callable[[TestbedSpec], contextlib.AbstractContextManager[World]]:
    """Cases in one federation (set up with DNS), each in a namespace of its own."""
    return lambda testbed: namespace_in(testbed, federation)


def own(
    *, bootstrap: bool = True, join: bool = False, dns: bool = False
) -> Callable[[TestbedSpec], contextlib.AbstractContextManager[World]]:
    """Cases each in a federation of its own (for procedures that change the federation)."""

    @contextlib.contextmanager
    def world(testbed: TestbedSpec) -> Iterator[World]:
        with a_federation(testbed, join=join, bootstrap=bootstrap, dns=dns, prefix="c") as name:
            if bootstrap:
                with namespace_in(testbed, name) as made:
                    yield made
            else:
                yield World(testbed, name, f"{name}-none")

    return world


# The scenarios. Members: a and b in one region, c alone in the other (the test bed's layout).


def _members(world: World) -> tuple[str, str, str]:
    a, b, c = (m.name for m in world.testbed.members)
    return a, b, c


def _region(world: World) -> str:
    return world.testbed.members[-1].region


def _web(world: World, replicas: int = 6, clusters: list[str] | None = None) -> None:
    from fleetflow.kube import apply
    from fleetflow.testbed.demo import federated_deployment

    manifest = federated_deployment(
        world.federation, "web", world.namespace, replicas, hostname=f"web-{world.namespace}"
    )
    if clusters is not None:
        manifest["spec"]["placement"] = {"clusters": clusters}
    apply(world.host(), manifest)


def _rebalanced(world: World) -> None:
    from fleetflow.flows.rebalance import rebalance_replicas
    from fleetflow.models import RebalanceRequest

    rebalance_replicas(RebalanceRequest(federation=world.federation, namespace=world.namespace))


def _placed(world: World) -> None:
    _web(world)
    _rebalanced(world)


def _moved(world: World) -> None:
    """web over the three members, then asked to leave c: the rebalance scales a and b up,
    moves DNS off c, then empties c."""
    _placed(world)
    a, b, _ = _members(world)
    _web(world, clusters=[a, b])


def _failed_over(world: World) -> None:
    from fleetflow.flows.failover import regional_failover
    from fleetflow.models import FailoverRequest

    regional_failover(FailoverRequest(federation=world.federation, region=_region(world)))


def _failed_back(world: World) -> None:
    from fleetflow.flows.failover import regional_failback
    from fleetflow.models import FailbackRequest

    regional_failback(FailbackRequest(federation=world.federation, region=_region(world)))


def _placed_and_failed_over(world: World) -> None:
    _placed(world)
    _failed_over(world)


def _taint(world: World, add: bool) -> None:
    from fleetflow.flows.taint import taint_member
    from fleetflow.models import TaintRequest

    request = TaintRequest(
        federation=world.federation,
        member=_members(world)[2],
        add=["crash=yes:NoSchedule"] if add else [],
        remove=[] if add else ["crash"],
    )
    taint_member(request)


def _join_request(world: World) -> Any:
    from fleetflow.models import JoinRequest

    member = world.testbed.members[-1]
    return JoinRequest(
        federation=world.federation,
        member=member.name,
        admin_block=member.name,
        region=member.region,
        ingress_address=member.ingress_address,
    )


def _joined(world: World) -> None:
    from fleetflow.flows.join import join_cluster

    join_cluster(_join_request(world))


def _bootstrapped(world: World) -> None:
    from fleetflow.flows.bootstrap import bootstrap_control_plane
    from fleetflow.models import BootstrapRequest

    bootstrap_control_plane(
        BootstrapRequest(
            federation=world.federation, host_cluster=world.testbed.host, namespace=world.system
        )
    )


def _unjoined(world: World) -> None:
    from fleetflow.flows.unjoin import unjoin_cluster
    from fleetflow.models import UnjoinRequest

    c = _members(world)[2]
    request = UnjoinRequest(
        federation=world.federation, member=c, admin_block=c, keep_workloads=False
    )
    unjoin_cluster(request)


def _rotated(world: World) -> None:
    from fleetflow.flows.rotate import rotate_credentials
    from fleetflow.models import RotateRequest

    rotate_credentials(RotateRequest(federation=world.federation, member=_members(world)[0]))


def _nothing(world: World) -> None:
    pass


def _stateful(world: World) -> None:
    """db, a StatefulSet with two volumes of data, running on a (us-east): to move to c."""
    from fleetflow.kube import apply
    from fleetflow.testbed.demo import federated_statefulset

    a = _members(world)[0]
    fd = federated_statefulset(world.federation, "db", world.namespace, a, volumes=("data", "logs"))
    apply(world.host(), fd)
    _rebalanced(world)
    dirs = poll_until(
        lambda: claim_directories(admin(a), world.namespace, "db"),
        lambda d: len(d) == 2,
        timeout=60,
        waiting_for="db's claims bound on its member",
    )
    seed(dirs, small=200, small_size=4096, large_mb=4)


def _db(world: World) -> list[str]:
    """The options that name db, for the migration's commands."""
    return ["--federation", world.federation, "--namespace", world.namespace, "--name", "db"]


def _migrate_request(world: World) -> Any:
    from fleetflow.models import MigrateRequest

    return MigrateRequest(
        federation=world.federation, namespace=world.namespace, name="db", target=_members(world)[2]
    )


def _migrated(world: World) -> None:
    from fleetflow.flows.migrate import migrate_workload

    migrate_workload(_migrate_request(world))


def _stateful_migrated(world: World) -> None:
    _stateful(world)
    _migrated(world)


def _cleaned(world: World) -> None:
    from fleetflow.flows.migrate import cleanup_migration
    from fleetflow.models import CleanupRequest

    cleanup_migration(
        CleanupRequest(federation=world.federation, namespace=world.namespace, name="db")
    )


def scenarios(federation: str) -> dict[str, Scenario]:
    """Every procedure's scenario; those of ``shared`` worlds use ``federation`` (joined, with
    DNS), one federation per scenario is best (a failover's record is the federation's)."""
    return {
        "rebalance": Scenario(
            "rebalance",
            shared(federation),
            _moved,
            lambda w: ["rebalance", "--federation", w.federation, "--namespace", w.namespace],
            _rebalanced,
        ),
        "failover": Scenario(
            "failover",
            shared(federation),
            _placed,
            lambda w: ["failover", "--federation", w.federation, "--region", _region(w)],
            _failed_over,
            restore=_failed_back,
            records=("failover-",),
        ),
        "failback": Scenario(
            "failback",
            shared(federation),
            _placed_and_failed_over,
            lambda w: ["failback", "--federation", w.federation, "--region", _region(w)],
            _failed_back,
            records=("failover-",),
        ),
        "taint": Scenario(
            "taint",
            shared(federation),
            _nothing,
            lambda w: [
                "taint",
                "--federation",
                w.federation,
                "--member",
                _members(w)[2],
                "--add",
                "crash=yes:NoSchedule",
            ],
            lambda w: _taint(w, add=True),
            restore=lambda w: _taint(w, add=False),
        ),
        "rotate": Scenario(
            "rotate",
            shared(federation),
            _nothing,
            lambda w: ["rotate", "--federation", w.federation, "--member", _members(w)[0]],
            _rotated,
        ),
        "migrate": Scenario(
            "migrate",
            shared(federation),
            _stateful,
            lambda w: ["migrate", *_db(w), "--target", _members(w)[2]],
            _migrated,
            floor=False,  # a migration stops the workload for its final sync, on purpose
            records=("migrate-",),
        ),
        "migrate-cleanup": Scenario(
            "migrate-cleanup",
            shared(federation),
            _stateful_migrated,
            lambda w: ["migrate-cleanup", *_db(w)],
            _cleaned,
            records=("migrate-",),
        ),
        "join": Scenario(
            "join",
            own(),
            _nothing,
            lambda w: [
                "join",
                "--federation",
                w.federation,
                "--member",
                w.testbed.members[-1].name,
                "--admin-block",
                w.testbed.members[-1].name,
                "--region",
                w.testbed.members[-1].region,
                "--ingress-address",
                w.testbed.members[-1].ingress_address,
            ],
            _joined,
            fleet=False,
        ),
        "bootstrap": Scenario(
            "bootstrap",
            own(bootstrap=False),
            _nothing,
            lambda w: [
                "bootstrap",
                "--federation",
                w.federation,
                "--host-cluster",
                w.testbed.host,
                "--namespace",
                w.system,
            ],
            _bootstrapped,
            fleet=False,
        ),
        "unjoin": Scenario(
            "unjoin",
            own(dns=True),
            _placed,
            lambda w: [
                "unjoin",
                "--federation",
                w.federation,
                "--member",
                _members(w)[2],
                "--admin-block",
                _members(w)[2],
                "--remove-workloads",
            ],
            _unjoined,
            fleet=False,
            records=("failover-",),
        ),
    }
