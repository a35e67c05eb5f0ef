"""A failover drill's verdict: the timeline, the samples, the objectives. Pure.

A drill injects a real fault into a region (or only fences it), lets the failover run, heals
the fault and lets the region fail back, sampling every second the federation's Ready replicas
and what DNS answers. The verdict holds each objective with its target and measured value.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from fleetflow.failpoints import Runbook, declare
from fleetflow.federated import FederatedDeployment
from fleetflow.operations import Operation, Phase, parse_stamp
from fleetflow.rebalance import MemberView, plan_workload

if TYPE_CHECKING:  # failover's import chain reaches models, which imports this module
    from fleetflow.failover import Outcome


class DrillMode(StrEnum):
    STOP_CLUSTERS = "stop-clusters"  # the test bed: stop every process of the region's clusters
    KILL_APISERVERS = "kill-apiservers"  # the test bed: SIGKILL the region's apiservers only
    FENCE = "fence"  # real clusters: no fault, the region is fenced and failed over


class Mark(StrEnum):
    """The moments of a drill, in order."""

    STARTED = "started"
    FAULT = "fault injected"
    DETECTED = "detected"
    FAILOVER = "failover started"
    SURVIVORS_READY = "survivors Ready"
    DNS_SWITCHED = "DNS answering survivors only"
    HEALED = "healed"
    FAILED_BACK = "failed back"
    DNS_RESTORED = "DNS answering as before the fault"
    DONE = "done"


class Sample(BaseModel):
    """One second of the drill: Ready replicas per workload, the DNS answers per name."""

    at: datetime
    ready: dict[str, int] = Field(default_factory=dict)
    answers: dict[str, list[str]] = Field(default_factory=dict)


class Objective(BaseModel):
    name: str
    target: str
    measured: str
    passed: bool


class Verdict(BaseModel):
    region: str
    mode: DrillMode
    timeline: dict[Mark, datetime] = Field(default_factory=dict)
    objectives: list[Objective] = Field(default_factory=list)
    samples: int = 0
    brought_back: list[str] = Field(default_factory=list)
    """What drills whose runs died had left, brought back before this one began."""

    def missed(self) -> list[str]:
        """Each objective missed, with its target."""
        return [
            f"{o.name}: {o.measured} (target {o.target})" for o in self.objectives if not o.passed
        ]

    @property
    def passed(self) -> bool:
        return bool(self.objectives) and all(o.passed for o in self.objectives)

    def seconds(self, mark: Mark) -> float | None:
        start, at = self.timeline.get(Mark.STARTED), self.timeline.get(mark)
        return (at - start).total_seconds() if start and at else None

    def summary(self) -> str:
        """One line for the run's final state."""
        measured = "; ".join(f"{o.name} {o.measured} (target {o.target})" for o in self.objectives)
        result = "passed" if self.passed else "FAILED"
        return f"drill of {self.region} ({self.mode.value}) {result}: {measured}"

    def markdown(self) -> str:
        lines = [
            f"## Drill of region {self.region} ({self.mode.value}): "
            f"{'PASS' if self.passed else 'FAIL'}",
            "",
            "| moment | at | seconds |",
            "| --- | --- | --- |",
            *(
                f"| {m.value} | {at.strftime('%H:%M:%S.%f')[:-3]} | {self.seconds(m):.1f} |"
                for m, at in self.timeline.items()
            ),
            "",
            "| objective | target | measured | result |",
            "| --- | --- | --- | --- |",
            *(
                f"| {o.name} | {o.target} | {o.measured} | {'pass' if o.passed else 'FAIL'} |"
                for o in self.objectives
            ),
            "",
            f"{self.samples} samples, one a second.",
            *(f"\nBefore it began, a drill whose run died: {b}" for b in self.brought_back),
        ]
        return "\n".join(lines)


class Targets(BaseModel):
    detect: float = Field(default=30, description="Seconds from the fault to detection")
    recover: float = Field(
        default=20,
        description="Seconds from the failover's start to survivors Ready and DNS switched",
    )


def _span(timeline: dict[Mark, datetime], start: Mark, end: Mark) -> float | None:
    a, b = timeline.get(start), timeline.get(end)
    return (b - a).total_seconds() if a and b else None


def judge(
    region: str,
    mode: DrillMode,
    timeline: dict[Mark, datetime],
    samples: list[Sample],
    floors: dict[str, int],
    region_addresses: set[str],
    targets: Targets,
    failure: str | None = None,
    failover: Outcome | None = None,
    not_back: Mapping[str, Mapping[str, str]] | None = None,
) -> Verdict:
    """Each objective, measured from the timeline and the samples; ``failure``, a step that
    raised, fails the drill whatever else was measured; ``failover``, what the failover
    recorded of the workloads it could not place (None: it recorded nothing); ``not_back``,
    what the failback does not return to the region (:func:`not_returning`)."""
    verdict = Verdict(region=region, mode=mode, timeline=dict(timeline), samples=len(samples))
    verdict.objectives.append(
        Objective(
            name="every step completed",
            target="fault, failover, heal, failback",
            measured=failure or "yes",
            passed=failure is None,
        )
    )
    detect = _span(timeline, Mark.FAULT, Mark.DETECTED)
    if mode is not DrillMode.FENCE:
        verdict.objectives.append(
            Objective(
                name="time to detect",
                target=f"< {targets.detect:g}s",
                measured=f"{detect:.1f}s" if detect is not None else "not detected",
                passed=detect is not None and detect < targets.detect,
            )
        )
    recover = _span(timeline, Mark.FAILOVER, Mark.DNS_SWITCHED)
    verdict.objectives.append(
        Objective(
            name="time to recover (failover start to survivors Ready and DNS switched)",
            target=f"< {targets.recover:g}s",
            measured=f"{recover:.1f}s" if recover is not None else "did not recover",
            passed=recover is not None and recover < targets.recover,
        )
    )
    dips = [
        f"{key} {s.ready.get(key, 0)} < {floor} at {s.at.strftime('%H:%M:%S')}"
        for s in samples
        for key, floor in floors.items()
        if s.ready and s.ready.get(key, 0) < floor
    ]
    verdict.objectives.append(
        Objective(
            name="availability floor never crossed",
            target="Ready >= before minus the region's, always",
            measured="held" if not dips else f"{len(dips)} dips, first: {dips[0]}",
            passed=bool(samples) and not dips,
        )
    )
    verdict.objectives.append(_kept(failover))
    if not_back:
        # The operator's own rules (a NoSchedule taint, say) keep these out of the region once
        # emptied: said, so that nobody waits for them, and not failed: the drill honoured them.
        verdict.objectives.append(
            Objective(
                name="what the failback returns to the region",
                target="every workload its rules allow there",
                measured="not returned, by their rules: "
                + "; ".join(
                    f"{k} to {m} ({why})"
                    for k, by_member in sorted(not_back.items())
                    for m, why in sorted(by_member.items())
                ),
                passed=True,
            )
        )
    # From the switch until the fault is healed, no answer may name the region.
    switched, back = timeline.get(Mark.DNS_SWITCHED), timeline.get(Mark.HEALED)
    wrong = [
        f"{name} -> {', '.join(sorted(set(targets_) & region_addresses))} at "
        f"{s.at.strftime('%H:%M:%S')}"
        for s in samples
        if switched and s.at >= switched and (back is None or s.at < back)
        for name, targets_ in s.answers.items()
        if set(targets_) & region_addresses
    ]
    verdict.objectives.append(
        Objective(
            name="DNS never points at the failed region after the switch",
            target="0 answers",
            measured="none" if not wrong else f"{len(wrong)}, first: {wrong[0]}",
            passed=switched is not None and not wrong,
        )
    )
    return verdict


def _kept(failover: Outcome | None) -> Objective:
    """Every workload keeps replicas on the survivors. One pinned to the region (or with no
    room anywhere else) serves nothing while the region is away: the drill says so and fails,
    whatever its floors (a floor of 0 always holds)."""
    name, target = "every workload keeps replicas while the region is away", "0 left without"
    if failover is None:
        measured = "not recorded: the failover did not finish"
        return Objective(name=name, target=target, measured=measured, passed=False)
    stranded = failover.stranded
    short = [f"{k} {n} short" for k, n in sorted(failover.unplaced.items()) if k not in stranded]
    measured = (
        f"{len(stranded)} left without: {', '.join(stranded)}" if stranded else "none left without"
    )
    measured += f" ({'; '.join(short)}: no room)" if short else ""
    kept = [f"{k} on {', '.join(m)}" for k, m in sorted(failover.held.items())]
    measured += f" (held by a migration, kept in the region: {'; '.join(kept)})" if kept else ""
    return Objective(name=name, target=target, measured=measured, passed=not stranded)


def answers_missing(
    before: dict[str, list[str]],
    now: dict[str, list[str]],
    region: set[str],
    not_back: Mapping[str, Collection[str]] | None = None,
) -> dict[str, list[str]]:
    """Per DNS name, the region's addresses it answered before the fault and does not answer
    now. The drill is restored when none is missing: a name that never answered the region
    (its workload runs elsewhere) waits for nothing, nor does one at the addresses its
    workload does not return to (``not_back``, by name)."""
    excused = not_back or {}
    missing = {
        n: sorted((region & set(t)) - set(now.get(n, [])) - set(excused.get(n, ())))
        for n, t in before.items()
    }
    return {n: gone for n, gone in missing.items() if gone}


def not_returning(
    workloads: list[FederatedDeployment], members: dict[str, MemberView], region: list[str]
) -> dict[str, dict[str, str]]:
    """Per workload, each member of ``region`` that runs it Ready before the fault and that its
    plan gives no replica once the failover has emptied the region, with why (a ``NoSchedule``
    taint it does not tolerate lets a member keep what it runs, not take it back). The failback
    does not return it there, so its DNS name will not answer there again."""
    emptied = {
        m: v.model_copy(update={"deployments": {}}) if m in region else v
        for m, v in members.items()
    }
    found: dict[str, dict[str, str]] = {}
    for fd in workloads:
        running = [
            m
            for m in region
            if m in members and (o := members[m].deployments.get(fd.key)) and o.ready
        ]
        if fd.deleting or not running:
            continue
        plan = plan_workload(fd, emptied)
        if plan.error or plan.held:
            continue  # nothing is planned for it: it stays as it runs
        gone = {
            m: plan.reasons.get(m) or "its placement gives it none there"
            for m in running
            if not plan.replicas.get(m)
        }
        if gone:
            found[fd.key] = gone
    return found


PHASE_MARKS = {
    "fault-injected": Mark.FAULT,
    "detected": Mark.DETECTED,
    "healed": Mark.HEALED,
    "failed-back": Mark.FAILED_BACK,
    "dns-restored": Mark.DNS_RESTORED,
}
"""The drill's phases, as its operation record names them, and the moment each one's end is."""


def drill_phases(mode: DrillMode, dns: bool) -> tuple[str, ...]:
    """The phases of a drill, in order: a fence is not detected, and without a DNS server there
    is no answer to wait for."""
    return (
        "fault-injected",
        *(() if mode is DrillMode.FENCE else ("detected",)),
        "failed-over",
        "healed",
        "recovered",
        "failed-back",
        *(("dns-restored",) if dns else ()),
    )


ABANDONED = "abandoned-closed"
BRING_BACK = Runbook("drill", (ABANDONED,))
"""The step before a drill's own phases: what drills whose runs died left is brought back."""
declare("drill", drill_phases(DrillMode.KILL_APISERVERS, dns=True))  # every phase a drill has


class Abandoned(BaseModel):
    """A drill whose run died part way (a killed worker, a closed terminal): its record still
    says Running, and its region may be faulted and failed over. The next drill brings the
    region back and closes the record, before it measures anything."""

    record: Operation
    region: str
    mode: DrillMode
    fail_back: bool
    """Its region's failover began during the drill and the drill did not fail it back."""
    healed: list[str] = Field(default_factory=list)
    """The clusters started again (those its fault left stopped)."""

    def closing(self, by: str) -> str:
        """The message that closes its record: where it stopped and what was brought back."""
        steps = [s.name for s in self.record.status.steps]
        reached = f"after {steps[-1]}" if steps else "before its first phase"
        done = [f"started {', '.join(self.healed)}"] if self.healed else []
        done += ["failed the region back"] if self.fail_back else []
        undone = " and ".join(done) or "found nothing to bring back"
        return (
            f"abandoned: its run {self.record.flow_run_id or '?'} stopped {reached}; "
            f"drill run {by} {undone}"
        )


def abandoned(
    records: list[Operation], own: str, failovers: Mapping[str, Operation | None]
) -> list[Abandoned]:
    """The drills whose runs died, among ``records`` (read while holding the drill lease: no
    live drill owns a Running record then, and a run that lost the lease writes no more),
    other than this run's own (``own``: a retried run resumes it). ``failovers``: each
    region's failover record; one begun at or after the drill began is the drill's doing."""
    found = []
    for op in records:
        if op.procedure != "drill" or op.name == own or op.status.phase is not Phase.RUNNING:
            continue
        region = str(op.parameters.get("region", ""))
        failover = failovers.get(region)
        began, drilled = (
            parse_stamp(failover.status.started_at) if failover else None,
            parse_stamp(op.status.started_at),
        )
        fail_back = bool(began and drilled and began >= drilled) and not op.done("failed-back")
        mode = DrillMode(op.parameters.get("mode", DrillMode.FENCE.value))
        found.append(Abandoned(record=op, region=region, mode=mode, fail_back=fail_back))
    return found


def drill_marks(
    started: datetime, steps: dict[str, datetime], failover: dict[Mark, datetime] | None = None
) -> dict[Mark, datetime]:
    """The drill's timeline, in the order of its moments, from its phases' ends (``steps``)
    and what the failover's own record says (``failover``: when the survivors were Ready and
    DNS answered). The failover starts when the fault is detected (a fence: once it is
    injected)."""
    marks = {Mark.STARTED: started, **(failover or {})}
    marks.update({PHASE_MARKS[n]: at for n, at in steps.items() if n in PHASE_MARKS})
    begun = steps.get("detected") or steps.get("fault-injected")
    if begun:
        marks[Mark.FAILOVER] = begun
    return {m: marks[m] for m in Mark if m in marks}


def availability_floors(
    workloads: list[FederatedDeployment],
    members: dict[str, MemberView],
    survivors: list[str],
) -> dict[str, int]:
    """Per workload (but those being deleted), the Ready replicas the survivors hold before
    the fault: the drill's floor (Ready replicas never fall below it while the region is
    away)."""
    return {
        fd.key: sum(
            members[m].deployments[fd.key].ready
            for m in survivors
            if m in members and fd.key in members[m].deployments
        )
        for fd in workloads
        if not fd.deleting
    }
