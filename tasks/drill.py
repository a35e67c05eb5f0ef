"""Steps of a failover drill: inject and heal faults, sample the federation every second."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from prefect import task

from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import LABEL_FEDERATION
from fleetflow.drill import DrillMode, Sample
from fleetflow.errors import ClusterError, InvalidRequest
from fleetflow.kube.workloads import member_workloads
from fleetflow.resolve import lookup
from fleetflow.tasks.clusters import client
from fleetflow.tasks.common import PRIVATE
from fleetflow.testbed import bed

FAULTS = {
    DrillMode.STOP_CLUSTERS: bed.Fault.STOP_CLUSTER,
    DrillMode.KILL_APISERVERS: bed.Fault.KILL_APISERVER,
}


def check_injectable(mode: DrillMode, members: list[str]) -> None:
    """Faults exist only on the test bed: a real cluster is drilled by fencing."""
    if mode is DrillMode.FENCE:
        return
    spec = bed.load_spec()
    known = set(spec.cluster_names()) if spec else set()
    missing = sorted(set(members) - known)
    if missing:
        raise InvalidRequest(
            f"mode {mode.value} injects faults into test-bed clusters, and {', '.join(missing)} "
            "are not on this machine's test bed: drill real clusters with mode=fence"
        )


@task(**PRIVATE)
def inject(mode: DrillMode, members: list[str]) -> None:
    if mode in FAULTS:
        for member in members:
            bed.fault(member, FAULTS[mode], progress=lambda _: None)


@task(**PRIVATE)
def heal(mode: DrillMode, members: list[str]) -> list[str]:
    """Start again each member the fault left not whole (a second heal, or a drill whose run
    died before its fault, finds it whole); the members started."""
    started = [m for m in members if mode in FAULTS and not bed.whole(m)]
    for member in started:
        bed.fault(member, bed.Fault.START_CLUSTER, progress=lambda _: None)
    return started


class Sampler(threading.Thread):
    """Every second: Ready replicas per workload across the members that answer, and what the
    DNS server says for each exposed name. Runs beside the drill's steps."""

    def __init__(
        self,
        blocks: dict[str, KubeCluster | None],
        federation: str,
        names: list[str],
        dns_server: str | None,
    ) -> None:
        super().__init__(name="drill-sampler", daemon=True)
        self.blocks, self.federation = blocks, federation
        self.names, self.dns_server = names, dns_server
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def begin(self) -> Sample:
        """Take the first sample here, before the fault (the federation as it was, which DNS
        must answer again once the region is back), then sample every second beside the
        drill."""
        first = self.sample()
        self.samples.append(first)
        self.start()
        return first

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.samples.append(self.sample())

    def sample(self) -> Sample:
        ready: dict[str, int] = {}
        for block in self.blocks.values():
            if block is None:
                continue
            try:  # Deployments and StatefulSets alike: a drill floors every kind
                found = member_workloads(client(block), f"{LABEL_FEDERATION}={self.federation}")
            except ClusterError:
                continue  # an unreachable member serves nothing
            for d in found:
                key = f"{d['metadata']['namespace']}/{d['metadata']['name']}"
                ready[key] = ready.get(key, 0) + (d.get("status") or {}).get("readyReplicas", 0)
        answers = (
            {n: lookup(n, self.dns_server, timeout=0.5).targets for n in self.names}
            if self.dns_server
            else {}
        )
        return Sample(at=datetime.now(UTC), ready=ready, answers=answers)

    def stop(self) -> list[Sample]:
        self.done.set()
        self.join()
        return self.samples
