"""Data-aware migration on the test bed: real volumes (directories the members' own hostPath
provisioner made), real rsync, real checksums, the real DNS server's answers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL

from fleetflow.blocks.loading import load_federation
from fleetflow.cli.stack import federate_testbed
from fleetflow.controlplane import API_VERSION
from fleetflow.errors import InvalidRequest, MigrationRefused, ResourceNotFound, VerificationFailed
from fleetflow.federated import ANNOTATION_MIGRATION
from fleetflow.flows.migrate import migrate_workload
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.kube import apply, get, list_objects
from fleetflow.lease import LEASE_API, Lease
from fleetflow.migration import PHASES, Link, RegionMatrix
from fleetflow.models import MigrateRequest, RebalanceRequest
from fleetflow.polling import poll_until
from fleetflow.resolve import lookup
from fleetflow.testbed.demo import federated_deployment, federated_statefulset
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.testbed.volumes import claim_directories, seed
from tests.integration.conftest import a_federation, client_for, fleetflow

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
    fleet: str, testbed: TestbedSpec, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEETFLOW_LEASE_DURATION", "3")  # the killed run's lease lapses sooner
    a, _b, c = (m.name for m in testbed.members)
    source = deployed(testbed, fleet, namespace, stateful(fleet, namespace, a), a)
    total = seed(source, small=200, small_size=16384, large_mb=60)
    before = digests(source)
    code = (
        "from fleetflow.flows.migrate import migrate_workload\n"
        "from fleetflow.models import MigrateRequest\n"
        f"migrate_workload(MigrateRequest(federation={fleet!r}, namespace={namespace!r}, "
        f"name='db', target={c!r}, bandwidth_mbps=20))\n"
    )
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        poll_until(
            lambda: sum(
                f.stat().st_size for d in directories(c, namespace).values() for f in d.rglob("*")
            ),
            lambda copied: copied > 10_000_000,
            timeout=90,
            interval=0.1,
            waiting_for="the first pre-copy round under way",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
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

    migrate_workload(request)  # the rerun copies the bad file again, and cuts over
    assert digests(directories(c, namespace)) == before
    assert running(c, namespace) == 1


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
    for member in (b, c):
        assert list_objects(client_for(member), "v1", "PersistentVolumeClaim", namespace) == []
