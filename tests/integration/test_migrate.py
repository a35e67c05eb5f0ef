"""Data-aware migration on the test bed: real volumes (directories the members' own hostPath
provisioner made), real rsync, real checksums, the real DNS server's answers."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL

from fleetflow.blocks import KubeCluster
from fleetflow.blocks.loading import load_federation
from fleetflow.cli.stack import federate_testbed
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import InvalidRequest, MigrationRefused, ResourceNotFound, VerificationFailed
from fleetflow.federated import ANNOTATION_MIGRATION
from fleetflow.flows.migrate import migrate_workload
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import apply, delete, get, list_objects
from fleetflow.lease import LEASE_API, Lease
from fleetflow.migration import PHASES, Link, RegionMatrix
from fleetflow.models import MigrateRequest, RebalanceRequest
from fleetflow.polling import poll_until
from fleetflow.resolve import lookup
from fleetflow.rsync import movers_into
from fleetflow.stack import Stack, ensure_automations
from fleetflow.tasks.leases import holding, rebalance_lease
from fleetflow.testbed.demo import federated_deployment, federated_object, federated_statefulset
from fleetflow.testbed.spec import HOSTPATH_ROOT, STORAGE_CLASS, TestbedSpec
from fleetflow.testbed.volumes import claim_directories, seed
from tests.integration.conftest import a_federation, client_for, fleetflow, quiet

pytestmark = pytest.mark.integration

VOLUMES = ("data", "logs", "blobs")


@pytest.fixture(scope="module")
def fleet(admin_blocks: list[str], testbed: TestbedSpec) -> Iterator[str]:
    """One federation for the module: the test bed's DNS, members in their regions, residency
    rules (``us``, ``eu``) and a slow, dear link between the two regions."""
    with a_federation(testbed, join=False, prefix="m") as name:
        federate_testbed(testbed, name, namespace=f"{name}-system")
        block = load_federation(name)
        block.regions = RegionMatrix(
            links=[Link(source="us-east", target="eu-west", cost_per_gb=0.05, mbps=50)],
            residency={"us": ["us-east"], "eu": ["eu-west"]},
        )
        block.save(name, overwrite=True)
        yield name


@pytest.fixture(scope="module")
def afterwards() -> Iterator[list[Callable[[], None]]]:
    """Checks that wait on a clock no test can speed up, run once the module's other tests are
    done, so that their work fills the wait instead of the suite sitting idle: Prefect marks a
    killed run Crashed only three 30-s heartbeats after its last one. A failed check fails the
    teardown of the module's last test, with its own message."""
    checks: list[Callable[[], None]] = []
    yield checks
    for check in checks:
        check()


def stateful(
    federation: str,
    namespace: str,
    member: str,
    *,
    name: str = "db",
    data: dict[str, Any] | None = None,
    volumes: tuple[str, ...] = VOLUMES,
    cpu: str = "100m",
) -> dict[str, Any]:
    return federated_statefulset(
        federation, name, namespace, member, volumes=volumes, data=data, cpu=cpu
    )


def statefulset(member: str, namespace: str, name: str = "db") -> dict[str, Any] | None:
    try:
        found: dict[str, Any] = get(client_for(member), "apps/v1", "StatefulSet", name, namespace)
    except ResourceNotFound:
        return None
    return found


def running(member: str, namespace: str, name: str = "db") -> int:
    """Ready replicas of the StatefulSet there (0 when it has none)."""
    sts = statefulset(member, namespace, name)
    return int(((sts or {}).get("status") or {}).get("readyReplicas") or 0)


def directories(member: str, namespace: str, name: str = "db") -> dict[str, Path]:
    return claim_directories(client_for(member), namespace, name)


def deployed(
    testbed: TestbedSpec, federation: str, namespace: str, fd: dict[str, Any], member: str
) -> dict[str, Path]:
    """Apply, rebalance, wait until it runs Ready with its claims bound: their directories."""
    apply(client_for(testbed.host), fd)
    rebalance_replicas(RebalanceRequest(federation=federation, namespace=namespace))
    poll_until(
        lambda: running(member, namespace, fd["metadata"]["name"]),
        lambda n: n == 1,
        timeout=60,
        waiting_for="the StatefulSet Ready on its member",
    )
    count = len(fd["spec"]["template"]["spec"]["volumeClaimTemplates"])
    return poll_until(
        lambda: directories(member, namespace, fd["metadata"]["name"]),
        lambda d: len(d) == count,
        timeout=30,
        waiting_for="the claims bound",
    )


def digests(dirs: dict[str, Path]) -> dict[str, str]:
    """sha256 of every file, by claim and relative path: computed here, not by fleetflow."""
    found = {}
    for claim, root in dirs.items():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            found[f"{claim}/{path.relative_to(root)}"] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    return found


def operation(testbed: TestbedSpec, federation: str, namespace: str) -> dict[str, Any]:
    found: dict[str, Any] = get(
        client_for(testbed.host),
        API_VERSION,
        "FederationOperation",
        f"migrate-{namespace}-db",
        f"{federation}-system",
    )
    return found


def test_a_statefulset_moves_to_the_region_of_its_data_byte_for_byte_with_its_downtime_measured(
    fleet: str, testbed: TestbedSpec, namespace: str, fleetflow_home: Path
) -> None:
    a, _b, c = (m.name for m in testbed.members)  # a, b in us-east; c in eu-west
    # It reads a large dataset that lives in eu-west: moving there is cheaper than staying.
    fd = stateful(
        fleet,
        namespace,
        a,
        data={"datasets": [{"name": "events", "region": "eu-west", "sizeGB": 500}]},
    )
    source = deployed(testbed, fleet, namespace, fd, a)
    total = seed(source, small=2000, small_size=8192, large_mb=160)
    before = digests(source)
    assert total > 170_000_000 and len(before) == 4001

    report = migrate_workload(MigrateRequest(federation=fleet, namespace=namespace, name="db"))

    assert running(c, namespace) == 1
    assert statefulset(a, namespace) is None  # the stopped copy is gone...
    assert digests(source) == before  # ...its data is not
    target = directories(c, namespace)
    assert sorted(target) == sorted(source)
    assert digests(target) == before
    host_fd = get(client_for(testbed.host), API_VERSION, "FederatedDeployment", "db", namespace)
    assert host_fd["spec"]["placement"]["clusters"] == [c]
    assert ANNOTATION_MIGRATION not in (host_fd["metadata"].get("annotations") or {})
    dns = lookup(f"db-{namespace}.{testbed.dns_zone}", f"127.0.0.1:{testbed.dns_ports().dns}")
    assert dns.targets == [next(m.ingress_address for m in testbed.members if m.name == c)]

    op = operation(testbed, fleet, namespace)
    assert op["status"]["phase"] == "Succeeded"
    assert tuple(s["name"] for s in op["status"]["steps"]) == PHASES
    result = op["status"]["result"]
    assert result["precopy"][0]["bytes"] == total  # the first round moved everything
    assert result["finalSync"]["bytes"] < total / 100  # nothing was writing: little to sync
    assert result["files"] == 4001
    assert "downtime" in str(report) or report.notes
    print(f"migration of {total:,} bytes: {result}")

    # The source's data stays until cleanup; cleanup deletes it, and only then.
    assert len(directories(a, namespace)) == 3
    again = fleetflow(
        "migrate-cleanup",
        "--federation",
        fleet,
        "--namespace",
        namespace,
        "--name",
        "db",
        home=fleetflow_home,
    )
    assert again.returncode == 0, again.stderr
    poll_until(
        lambda: directories(a, namespace),
        lambda d: not d,
        timeout=30,
        waiting_for="the source's claims deleted",
    )
    assert digests(target) == before

    # Cleaned up, it may move again: a new record, and its data back where it was.
    migrate_workload(MigrateRequest(federation=fleet, namespace=namespace, name="db", target=a))
    op = operation(testbed, fleet, namespace)
    assert op["spec"]["parameters"]["source"] == c and op["status"]["phase"] == "Succeeded"
    assert digests(directories(a, namespace)) == before and running(a, namespace) == 1


def _lease_lapsed(testbed: TestbedSpec, federation: str, namespace: str) -> None:
    host = client_for(testbed.host)

    def lease() -> Lease:
        return Lease.from_object(
            get(
                host,
                LEASE_API,
                "Lease",
                f"fleetflow-migrate-{namespace}-db",
                f"{federation}-system",
            )
        )

    poll_until(
        lease,
        lambda held: not held.holder or held.expired(datetime.now(UTC)),
        timeout=30,
        waiting_for="the killed run's lease to lapse",
    )


def test_a_migration_killed_mid_copy_resumes_and_copies_only_what_was_missing(
    fleet: str,
    testbed: TestbedSpec,
    namespace: str,
    fleetflow_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    afterwards: list[Callable[[], None]],
) -> None:
    # The killed run's lease lapses sooner than the default, yet not before the checks below
    # ask for it (on a loaded machine they take a few seconds).
    monkeypatch.setenv("FLEETFLOW_LEASE_DURATION", "10")
    ensure_automations(Stack(api_url=str(PREFECT_API_URL.value())), progress=quiet)
    a, _b, c = (m.name for m in testbed.members)
    source = deployed(testbed, fleet, namespace, stateful(fleet, namespace, a), a)
    total = seed(source, small=200, small_size=16384, large_mb=60)
    before = digests(source)
    # From the command line, as a user runs it (the flow runs in that process), then SIGKILL
    # to that process alone: its rsync must not outlive it.
    command = [str(Path(sys.executable).with_name("fleetflow")), "migrate", "--federation", fleet]
    command += ["--namespace", namespace, "--name", "db", "--target", c, "--bandwidth-mbps", "20"]
    env = dict(os.environ, PREFECT_API_URL=str(PREFECT_API_URL.value()))
    env["PREFECT_HOME"] = str(fleetflow_home)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def copied() -> int:
        return sum(
            f.stat().st_size for d in directories(c, namespace).values() for f in d.rglob("*")
        )

    try:
        poll_until(
            copied,
            lambda n: n > 10_000_000,
            timeout=90,
            interval=0.1,
            waiting_for="the first pre-copy round under way",
        )
    finally:
        proc.kill()
        proc.wait()
    targets = [Path(d) for d in directories(c, namespace).values()]
    poll_until(
        lambda: [pid for d in targets for pid in movers_into(d)],
        lambda movers: not movers,
        timeout=2,
        interval=0.05,
        waiting_for="the killed run's rsync to die with it",
    )
    at_kill = copied()
    time.sleep(1)
    assert copied() == at_kill, "something still copies for the killed run"
    killed_run = UUID(operation(testbed, fleet, namespace)["spec"]["flowRunID"])
    assert "pre-copied" not in [
        s["name"] for s in operation(testbed, fleet, namespace)["status"]["steps"]
    ]
    assert running(a, namespace) == 1  # the source never stopped

    with pytest.raises(InvalidRequest, match="another migration of"):
        migrate_workload(MigrateRequest(federation=fleet, namespace=namespace, name="db"))
    _lease_lapsed(testbed, fleet, namespace)
    migrate_workload(MigrateRequest(federation=fleet, namespace=namespace, name="db"))

    result = operation(testbed, fleet, namespace)["status"]["result"]
    resumed = result["precopy"][0]["bytes"]
    assert 0 < resumed < total - 10_000_000, f"the rerun's first round moved {resumed} of {total}"
    assert digests(directories(c, namespace)) == before
    assert running(c, namespace) == 1

    # The killed run does not show Running for ever: silent for three heartbeats, it is Crashed
    # (checked once the module's other tests are done: the wait is 90 s or more).
    killed_at = time.monotonic()

    def crashed() -> None:
        with get_client(sync_client=True) as later:
            state = poll_until(
                lambda: later.read_flow_run(killed_run).state,
                lambda found: found is not None and found.type is StateType.CRASHED,
                timeout=max(5.0, 150 - (time.monotonic() - killed_at)),
                interval=2,
                waiting_for="the migration run killed mid-copy marked Crashed",
                describe=lambda found: found.type.value if found else "no state",
            )
        assert state is not None and (state.message or "").startswith("no heartbeat for 90s")

    afterwards.append(crashed)


def test_a_staged_migration_held_from_rebalance_then_cut_over_syncs_about_what_changed(
    fleet: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, _c = (m.name for m in testbed.members)
    fd = stateful(fleet, namespace, a)
    source = deployed(testbed, fleet, namespace, fd, a)
    seed(source, small=400, small_size=51200, large_mb=4)
    request = MigrateRequest(federation=fleet, namespace=namespace, name="db", target=b)

    migrate_workload(request.model_copy(update={"cutover": False}))
    op = operation(testbed, fleet, namespace)
    assert op["status"]["phase"] == "Paused"
    assert running(a, namespace) == 1  # staged: the source serves all along

    # A rebalance meanwhile leaves the workload as it runs, even asked for more replicas.
    host = client_for(testbed.host)
    apply(host, {**fd, "spec": {**fd["spec"], "replicas": 2}})
    rebalance_replicas(RebalanceRequest(federation=fleet, namespace=namespace))
    assert statefulset(a, namespace)["spec"]["replicas"] == 1  # type: ignore[index]
    assert statefulset(b, namespace) is None
    apply(host, fd)

    # 1% of the files change while it is staged: the final sync moves those, and only those.
    data = source[sorted(source)[0]]
    changed = sorted(data.rglob("*.bin"))[:4]
    for path in changed:
        path.write_bytes(os.urandom(51200))
    before = digests(source)

    migrate_workload(request)
    result = operation(testbed, fleet, namespace)["status"]["result"]
    final = result["finalSync"]
    assert final["files"] == 4 and final["bytes"] == pytest.approx(4 * 51200, rel=0.01), final
    assert digests(directories(b, namespace)) == before
    assert running(b, namespace) == 1


def test_the_source_is_not_stopped_while_a_rebalance_is_writing(
    fleet: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, _c = (m.name for m in testbed.members)
    source = deployed(testbed, fleet, namespace, stateful(fleet, namespace, a), a)
    seed(source, small=20, small_size=4096, large_mb=1)
    before = digests(source)
    block = KubeCluster.load(testbed.host)
    assert isinstance(block, KubeCluster)
    request = MigrateRequest(federation=fleet, namespace=namespace, name="db", target=b)

    def steps() -> list[str]:
        try:
            return [s["name"] for s in operation(testbed, fleet, namespace)["status"]["steps"]]
        except (ResourceNotFound, KeyError):
            return []

    with ThreadPoolExecutor(max_workers=1) as pool:
        # A rebalance that planned before the hold is writing (it holds the federation's
        # rebalance lease): the quiesce waits for it, the source serving meanwhile.
        lease = rebalance_lease(fleet)
        with holding(block, f"{fleet}-system", lease, "a-rebalance", duration=3, refusal="x"):
            moving = pool.submit(migrate_workload, request)
            poll_until(steps, lambda s: "pre-copied" in s, timeout=60, waiting_for="pre-copy")
            time.sleep(4)  # past a lease duration: only the holder's renewals keep it
            assert "quiesced" not in steps() and running(a, namespace) == 1
        moving.result(timeout=120)  # released: the migration goes on, and through
    assert digests(directories(b, namespace)) == before and running(b, namespace) == 1


def test_a_corrupt_copy_stops_the_cutover_and_the_source_serves_untouched(
    fleet: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, _b, c = (m.name for m in testbed.members)
    source = deployed(testbed, fleet, namespace, stateful(fleet, namespace, a), a)
    seed(source, small=100, small_size=4096, large_mb=8)
    before = digests(source)
    request = MigrateRequest(federation=fleet, namespace=namespace, name="db", target=c)
    migrate_workload(request.model_copy(update={"cutover": False}))

    # Rot on the target that rsync's quick check cannot see: same size, same time.
    victim = directories(c, namespace)[sorted(source)[-1]] / "large.bin"
    stat = victim.stat()
    with victim.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"rot")
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    # And the rollback's own rebalance fails once it has restarted the source (an invalid
    # FederatedObject in the namespace): the rollback was recorded before it acted.
    host = client_for(testbed.host)
    nameless = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}}
    apply(host, federated_object(fleet, namespace, nameless, name="nameless"))
    with pytest.raises(VerificationFailed, match="does not match the source"):
        migrate_workload(request)

    assert running(a, namespace) == 1  # rolled back: the source serves again...
    assert digests(source) == before  # ...with all its data
    assert statefulset(c, namespace) is None
    host_fd = get(client_for(testbed.host), API_VERSION, "FederatedDeployment", "db", namespace)
    assert host_fd["spec"]["placement"]["clusters"] == [a]
    assert ANNOTATION_MIGRATION not in (host_fd["metadata"].get("annotations") or {})
    op = operation(testbed, fleet, namespace)
    assert op["status"]["phase"] == "Failed"
    assert [s["name"] for s in op["status"]["steps"]] == ["provisioned", "pre-copied", "Failed"]

    # The source serves and writes; the rerun quiesces it again (never trusting the old final
    # sync), copies the bad file and the new writes, and cuts over.
    (source[sorted(source)[0]] / "written-after-rollback.bin").write_bytes(os.urandom(4096))
    after = digests(source)
    delete(host, API_VERSION, "FederatedObject", "nameless", namespace)
    migrate_workload(request)
    assert digests(directories(c, namespace)) == after != before
    assert running(c, namespace) == 1


def test_a_failure_once_the_target_may_serve_never_rolls_back_to_the_source(
    fleet: str, testbed: TestbedSpec, namespace: str
) -> None:
    a, b, _c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    source = deployed(testbed, fleet, namespace, stateful(fleet, namespace, a), a)
    seed(source, small=50, small_size=4096, large_mb=1)
    before = digests(source)
    # An invalid FederatedObject in the namespace: the rebalance that starts the target does
    # its work (target Ready, DNS switched, the source's copy removed), then raises.
    nameless = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ""}}
    apply(host, federated_object(fleet, namespace, nameless, name="nameless"))
    request = MigrateRequest(federation=fleet, namespace=namespace, name="db", target=b)
    with pytest.raises(InvalidRequest, match=r"spec\.template has no metadata\.name"):
        migrate_workload(request)

    # The target took over: the source was not restarted on its quiesce-time data.
    assert running(b, namespace) == 1
    assert (statefulset(a, namespace) or {"spec": {"replicas": 0}})["spec"]["replicas"] == 0
    op = operation(testbed, fleet, namespace)
    steps = [s["name"] for s in op["status"]["steps"]]
    assert steps == [*PHASES[: PHASES.index("cut-over") + 1], "Failed"], steps
    host_fd = get(host, API_VERSION, "FederatedDeployment", "db", namespace)
    assert host_fd["spec"]["placement"]["clusters"] == [b]

    # Put right, a rerun goes forward from the cut-over, and the data is the source's.
    delete(host, API_VERSION, "FederatedObject", "nameless", namespace)
    migrate_workload(request)
    op = operation(testbed, fleet, namespace)
    assert op["status"]["phase"] == "Succeeded"
    assert digests(directories(b, namespace)) == before and digests(source) == before


def test_the_plan_keeps_data_where_it_must_live_and_bad_input_changes_nothing(
    fleet: str, testbed: TestbedSpec, namespace: str, fleetflow_home: Path
) -> None:
    a, b, c = (m.name for m in testbed.members)
    host = client_for(testbed.host)
    # eu-west-1 would be cheapest (its dataset lives there), but the data must stay in us.
    us_only = {
        "residency": "us",
        "datasets": [{"name": "events", "region": "eu-west", "sizeGB": 500}],
    }
    deployed(testbed, fleet, namespace, stateful(fleet, namespace, a, data=us_only), a)
    common = ("--federation", fleet, "--namespace", namespace)

    plan = fleetflow("migrate", *common, "--name", "db", "--dry-run", home=fleetflow_home)
    assert plan.returncode == 0, plan.stderr
    assert f"{b}" in plan.stdout and "<- target" in plan.stdout
    assert "residency 'us'" in plan.stdout
    refused = fleetflow("migrate", *common, "--name", "db", "--target", c, home=fleetflow_home)
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: {namespace}/db cannot move to {c}: region eu-west: residency")

    apply(host, federated_deployment(fleet, "web", namespace, 1, placement={"clusters": [a]}))
    apply(host, stateful(fleet, namespace, a, name="cache", volumes=()))
    apply(host, stateful(fleet, namespace, a, name="big", cpu="500"))  # fits nowhere
    rebalance_replicas(RebalanceRequest(federation=fleet, namespace=namespace, wait_timeout=1))
    unknown = fleetflow("migrate", *common, "--name", "nosuch", home=fleetflow_home)
    assert unknown.returncode == 1, unknown.stderr
    [line] = unknown.stderr.strip().splitlines()
    assert line.startswith(
        f"error: no FederatedDeployment {namespace}/nosuch in this federation "
        f"(workloads: {namespace}/big, {namespace}/cache, {namespace}/db, {namespace}/web) "
        "(flow run "
    )
    for name, target, error, why in (
        ("db", a, InvalidRequest, "already runs on"),
        ("web", None, InvalidRequest, "is a Deployment"),
        ("cache", None, InvalidRequest, "declares no volumes"),
        ("big", None, MigrationRefused, "room for 0 of 1 replicas"),
    ):
        request = MigrateRequest(federation=fleet, namespace=namespace, name=name, target=target)
        with pytest.raises(error, match=why):
            migrate_workload(request)

    # A claim of the name the copy would fill, on the target, that is not ours: refused, as
    # propagation refuses what it does not manage (rsync --delete would replace its contents).
    theirs = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "logs-db-0", "namespace": namespace, "labels": {"team": "x"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    apply(client_for(b), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    apply(client_for(b), theirs)
    for dry_run in (True, False):
        request = MigrateRequest(
            federation=fleet, namespace=namespace, name="db", target=b, dry_run=dry_run
        )
        with pytest.raises(MigrationRefused, match=rf"{b} already has claim\(s\) logs-db-0 in"):
            migrate_workload(request)
    [claim] = list_objects(client_for(b), "v1", "PersistentVolumeClaim", namespace)
    assert claim["metadata"]["labels"] == {"team": "x"}
    host_fd = get(host, API_VERSION, "FederatedDeployment", "db", namespace)
    assert ANNOTATION_MIGRATION not in (host_fd["metadata"].get("annotations") or {})

    # Nothing changed: no record, no claim anywhere but where the workloads run.
    for name in ("db", "web", "cache", "big"):
        with pytest.raises(ResourceNotFound):
            get(
                host,
                API_VERSION,
                "FederationOperation",
                f"migrate-{namespace}-{name}",
                f"{fleet}-system",
            )
    for member, claims in ((b, ["logs-db-0"]), (c, [])):
        found = list_objects(client_for(member), "v1", "PersistentVolumeClaim", namespace)
        assert [o["metadata"]["name"] for o in found] == claims


def _prebound(name: str, namespace: str, claim: str, source: str, path: Path) -> dict[str, Any]:
    """A volume a member made ready for the claim the migration will create (bound to it by
    name before it exists), at a directory of the member's choosing: ``source`` ``hostPath``,
    or ``local`` (with the node affinity a local volume must have)."""
    spec: dict[str, Any] = {
        "capacity": {"storage": "10Gi"},
        "accessModes": ["ReadWriteOnce"],
        "persistentVolumeReclaimPolicy": "Retain",  # never let a deleter near the directory
        "storageClassName": STORAGE_CLASS,
        "claimRef": {"namespace": namespace, "name": claim},
    }
    if source == "local":
        spec["local"] = {"path": str(path)}
        spec["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "Exists"}]}
                ]
            }
        }
    else:
        spec["hostPath"] = {"path": str(path)}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": spec,
    }


@pytest.mark.parametrize(
    "attack",
    [
        "outside-its-root",  # a hostile target: /etc, the stack's database, ...
        "a-link-inside-its-root",  # a prefix check on the path as written would take it
        "the-sources-volume",  # a hostile target pointing at the source's own directory
        "a-shared-local-path",  # no attacker: two local volumes given one path
    ],
)
def test_a_member_that_steers_the_mover_to_a_directory_of_its_choice_is_refused_before_any_byte_moves(  # noqa: E501
    fleet: str, testbed: TestbedSpec, namespace: str, tmp_path: Path, attack: str
) -> None:
    a, _b, c = (m.name for m in testbed.members)
    source = deployed(
        testbed, fleet, namespace, stateful(fleet, namespace, a, volumes=("data",)), a
    )
    seed(source, small=20, small_size=1024, large_mb=1)
    victim = tmp_path / "victim"  # outside the bed's volume root: someone else's files
    (victim / "etc").mkdir(parents=True)
    (victim / "etc" / "passwd").write_text("root:x:0:0\n")
    # (The root followed by ``..`` is refused by the apiserver itself: a link is what gets in.)
    link = Path(HOSTPATH_ROOT) / f"attack-{namespace}"
    link.symlink_to(victim)
    path = {
        "outside-its-root": victim,
        "a-link-inside-its-root": link,
        "the-sources-volume": source["data-db-0"],
        "a-shared-local-path": source["data-db-0"],
    }[attack]
    volume = f"attack-{namespace}"[:63]
    kind = "local" if attack == "a-shared-local-path" else "hostPath"
    apply(client_for(c), _prebound(volume, namespace, "data-db-0", kind, path))
    try:
        before, theirs = digests(source), digests({"victim": victim})
        request = MigrateRequest(federation=fleet, namespace=namespace, name="db", target=c)
        reason = {
            "outside-its-root": "not inside the volume root",
            "a-link-inside-its-root": "is a symbolic link",
        }.get(attack, "share a directory")
        with pytest.raises(MigrationRefused, match=reason):
            migrate_workload(request)

        assert digests(source) == before and digests({"victim": victim}) == theirs
        assert running(a, namespace) == 1  # rolled back: the source serves as it did
        assert statefulset(c, namespace) is None
        op = operation(testbed, fleet, namespace)
        assert [s["name"] for s in op["status"]["steps"]] == ["provisioned", "Failed"]
    finally:
        delete(client_for(c), "v1", "PersistentVolume", volume)
        link.unlink()
