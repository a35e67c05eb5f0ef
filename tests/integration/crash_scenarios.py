"""The crash matrix's scenarios: for each procedure that writes, its start state, the command
a user types, the same request run again in this process, and how to undo what it did."""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from fleetflow.controlplane import API_VERSION
from fleetflow.errors import ResourceNotFound
from fleetflow.polling import poll_until
from fleetflow.testbed import bed
from fleetflow.testbed.spec import TestbedSpec
from fleetflow.testbed.volumes import claim_directories, seed
from tests.integration.conftest import a_federation, delete_namespace
from tests.integration.crash_state import World, admin, listed

FLEETFLOW = str(Path(sys.executable).with_name("fleetflow"))
"""The command a user types, from this environment."""
DRILL = (
    "import sys\n"
    "from fleetflow.errors import FleetflowError\n"
    "from fleetflow.flows.drill import failover_drill\n"
    "from fleetflow.models import DrillRequest\n"
    "try:\n"
    "    failover_drill(DrillRequest(federation=sys.argv[1], region=sys.argv[2]))\n"
    "except FleetflowError as exc:\n"
    "    sys.exit(f'error: {exc}')\n"
)
"""A drill as a worker runs it, in a process of its own (``fleetflow drill`` hands it to a
worker): the drill's words are its arguments."""


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
    program: tuple[str, ...] = (FLEETFLOW,)
    """What runs ``command``'s words: the ``fleetflow`` command, or a drill's process."""
    nested: tuple[str, ...] = ()
    """Points of procedures it runs inside its own (a drill's failover) that are cases too."""

    def argv(self, world: World) -> list[str]:
        return [*self.program, *self.command(world)]


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


def _drilled(world: World) -> None:
    from fleetflow.flows.drill import failover_drill
    from fleetflow.models import DrillRequest

    # Its objectives' targets wide: a case is judged by where the drill leaves the federation,
    # not by how fast a loaded machine detects and recovers.
    request = DrillRequest(
        federation=world.federation, region=_region(world), detect_target=300, recover_target=300
    )
    failover_drill(request)


def _undrilled(world: World) -> None:
    """The region whole and failed back whatever a case left, and the drills' records gone: each
    case is judged by its own (a drill's record is named for its run, and they add up)."""
    from fleetflow.kube import delete, get

    c, host, kind = _members(world)[2], world.host(), "FederationOperation"
    if not bed.whole(c):
        bed.fault(c, bed.Fault.START_CLUSTER, progress=lambda m: None)
    with contextlib.suppress(ResourceNotFound):
        failover = get(host, API_VERSION, kind, f"failover-{_region(world)}", world.system)
        if (failover.get("status") or {}).get("phase") != "Reverted":
            _failed_back(world)
    for o in listed(host, API_VERSION, kind, world.system):
        if o["metadata"]["name"].startswith("drill-"):
            delete(host, API_VERSION, kind, o["metadata"]["name"], world.system)


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
        "drill": Scenario(
            "drill",
            shared(federation),
            _placed,
            lambda w: [w.federation, _region(w)],
            _drilled,
            restore=_undrilled,
            floor=False,  # the drill's fault takes the region away: that is the drill
            records=("drill-", "failover-"),
            program=(sys.executable, "-c", DRILL),
            # Killed inside its failover and its failback: the next drill finishes neither,
            # it fails the region back and closes the record.
            nested=(
                "failover/scaled-up:write@1",
                "failover/drained:before",
                "failback/returned:before",
            ),
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
