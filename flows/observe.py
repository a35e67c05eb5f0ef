"""The observe step every procedure starts with: the host read in one task, then every member
probed once, at once, and assessed."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import get_run_logger

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import member_cluster
from fleetflow.probes import assess
from fleetflow.rebalance import HostView
from fleetflow.snapshot import Snapshot
from fleetflow.tasks.rebalance import probe_members
from fleetflow.watch import watcher_holds

Blocks = dict[str, KubeCluster | None]


def probe(
    view: HostView, federation: Federation, *, trust_watcher: bool
) -> tuple[Snapshot, Blocks]:
    """Probe every member of ``view`` once and assess it. With ``trust_watcher`` and a health
    watcher running, the members' health is the one it recorded (no second hysteresis); else
    this probe's, with the federation's policy. Also the members' credentials blocks, for the
    writes that follow."""
    blocks = {m.name: member_cluster(federation, m) for m in view.members}
    probes = probe_members(blocks, federation.name)
    now = datetime.now(UTC)
    watched = trust_watcher and watcher_holds(view.watch_lease, now)
    found = assess(view.members, probes, federation.health_policy(), now, watched=watched)
    for line in found.transitions:
        get_run_logger().info(line)
    return Snapshot(view=view, found=found, watched=watched, at=now), blocks
