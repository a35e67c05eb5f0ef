"""One runner for multi-phase procedures (failover, the drill; migration next).

A procedure declares its phases once, in order. The runner holds the procedure's lease in the
host (two runs never act at once; a crashed run's lease lapses), takes the operation record
over, runs each phase not yet recorded and records it on the ``FederationOperation`` before the
next begins, so a rerun after a crash resumes and never repeats a finished phase. A phase that
raises marks the record Failed, with why; a rerun takes it over and resumes all the same. The
timeline artifact is published however the run ends: a failed run shows how far it got.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect import get_run_logger
from pydantic import BaseModel, Field

from fleetflow import failpoints
from fleetflow.blocks import KubeCluster
from fleetflow.errors import FleetflowError
from fleetflow.flows.report import publish_timeline
from fleetflow.models import Action
from fleetflow.operations import Operation, Phase, finished, started, step_done
from fleetflow.settings import settings
from fleetflow.tasks.leases import Held, holding, run_identity
from fleetflow.tasks.operations import save_operation


def _now() -> datetime:
    return datetime.now(UTC)


class Done(BaseModel):
    """What one phase did: its writes, notes for the report, a message for the timeline."""

    actions: list[Action] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    message: str = ""
    result: dict[str, Any] = Field(default_factory=dict)
    """Figures to keep on the record (``status.result``): a resumed run reads them."""


class PhasedRun:
    """A procedure's phases carried out in their declared order, each recorded once done."""

    def __init__(
        self, host: KubeCluster, op: Operation, phases: Sequence[str], held: Held | None = None
    ) -> None:
        self.host, self.op, self.phases, self.held = host, op, tuple(phases), held
        self.actions: list[Action] = []
        self.notes: list[str] = []
        self.paused: str | None = None
        self._next = 0

    def check(self) -> None:
        """Raise :class:`LeaseLost` once this run may no longer hold its lease: before each
        phase, each record written, and inside long phases (the copy's rounds)."""
        if self.held is not None:
            self.held.check()

    def pause(self, why: str) -> None:
        """Stop here on purpose: the record says Paused, with why, and a rerun resumes."""
        self.paused = why

    def phase(self, name: str, step: Callable[[], Done]) -> None:
        """Run ``step`` unless the record says ``name`` is done, then record it. Phases must
        come in the order declared: a flow that skips or reorders one fails here, not in a
        resumed run."""
        if self._next >= len(self.phases) or self.phases[self._next] != name:
            raise RuntimeError(f"phase {name!r} out of order; declared: {', '.join(self.phases)}")
        self._next += 1
        if self.op.done(name):
            get_run_logger().info(f"{name}: done by an earlier run, skipped")
            return
        self.check()
        failpoints.enter(self.op.procedure, name)
        done = step()
        failpoints.leave(self.op.procedure, name)
        self.actions += done.actions
        self.notes += done.notes
        self.check()
        self.op = save_operation(
            self.host, step_done(self.op, name, _now(), done.message, **done.result)
        )
        get_run_logger().info(f"{name}: done" + (f" ({done.message})" if done.message else ""))


def _failed(run: PhasedRun, exc: Exception) -> None:
    """Record why the run stopped: the record says Failed until a rerun takes it over (and
    resumes it). A record that cannot be written leaves the first error to tell."""
    failed = finished(run.op, Phase.FAILED, _now(), str(exc).splitlines()[0] if str(exc) else "")
    with contextlib.suppress(FleetflowError):  # a lost lease: another run owns the record now
        run.check()
        run.op = save_operation.fn(run.host, failed)


@contextlib.contextmanager
def phased(
    host: KubeCluster, op: Operation, phases: Sequence[str], *, lease: str, refusal: str
) -> Iterator[PhasedRun]:
    """Hold ``lease``, mark the record Running (resumed: its finished phases kept), yield the
    run, and once the body is through, mark it Succeeded."""
    me = run_identity()
    duration = settings().lease_duration
    with holding(host, op.namespace, lease, me, duration=duration, refusal=refusal) as held:
        run = PhasedRun(host, op, phases, held)
        # Conditional on the version read before the lease was taken: a run that wrote the
        # record meanwhile makes this one stop instead of being overwritten.
        run.op = save_operation(host, started(op, _now(), me))
        try:
            yield run
        except Exception as exc:
            _failed(run, exc)
            with contextlib.suppress(Exception):  # the run's own error is the one to tell
                publish_timeline(run.op)
            raise
        if run.paused is not None:
            run.check()
            run.op = save_operation(host, finished(run.op, Phase.PAUSED, _now(), run.paused))
        else:
            run.check()
            run.op = save_operation(host, finished(run.op, Phase.SUCCEEDED, _now()))
    publish_timeline(run.op)
