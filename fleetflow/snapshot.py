"""One look at a federation, as every procedure starts. Pure.

A procedure reads the host once (``HostView``: what is federated, the registry, the watcher's
lease, the DNS records) and probes each member once (the one probe); the probes, assessed with
the federation's health policy, say what each member is and runs. Its decision is made from this
snapshot alone.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from fleetflow.probes import Assessment
from fleetflow.rebalance import HostView


class Snapshot(BaseModel):
    """The host's view, and every member probed once and assessed (health, free room, what it
    runs); ``watched``: the members' health is the one the health watcher recorded."""

    view: HostView
    found: Assessment
    watched: bool
    at: datetime | None = None
    """When the members were probed."""
