"""A failover drill: prove that a region can fail and come back without losing traffic.

Runbook: first bring back what drills whose runs died left (a killed worker: their region's
clusters stopped, the region failed over) and close their records; note each exposed workload's
availability floor; start sampling, every second, the federation's Ready replicas and the DNS
answers; inject the fault (test bed: stop the region's clusters, or kill their apiservers; real
clusters: only fence the region); detect it with the federation's health policy; fail over (or
wait for the auto-failover automation to); heal the fault; wait for the region to be Healthy;
fail back (or wait for the automation); wait for DNS to list the region again; publish the
verdict: the timeline and each objective with its target and measured value. The run fails when
an objective is missed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from prefect import flow, get_run_logger, runtime
from prefect.artifacts import create_markdown_artifact

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import load_federation, load_host
from fleetflow.drill import (
    ABANDONED,
    BRING_BACK,
    Abandoned,
    DrillMode,
    Mark,
    Targets,
    Verdict,
    abandoned,
    answers_missing,
    availability_floors,
    drill_marks,
    drill_phases,
    judge,
    not_returning,
)
from fleetflow.errors import PartialFailure, prefect_overloaded
from fleetflow.failover import Evacuation, Outcome, evacuation
from fleetflow.flows.failover import regional_failback, regional_failover
from fleetflow.flows.observe import probe
from fleetflow.flows.phases import Done, PhasedRun, phased
from fleetflow.flows.report import finished
from fleetflow.health import Health, HealthPolicy, HealthState, observe
from fleetflow.models import DrillRequest, FailbackRequest, FailoverRequest
from fleetflow.operations import Operation, Phase, parse_stamp
from fleetflow.operations import finished as ended
from fleetflow.polling import poll_until
from fleetflow.rebalance import HostView
from fleetflow.registry import MemberCluster
from fleetflow.resolve import lookup
from fleetflow.settings import settings
from fleetflow.tasks.drill import Sampler, check_injectable, heal, inject
from fleetflow.tasks.health import probe_health
from fleetflow.tasks.host import list_members, observe_host
from fleetflow.tasks.leases import holding, run_identity
from fleetflow.tasks.operations import list_operations, read_operation, save_operation
from fleetflow.traffic import expected_answers


def _now() -> datetime:
    return datetime.now(UTC)


@flow(name="failover-drill")
def failover_drill(request: DrillRequest) -> Verdict:
    """Fault a region, fail it over and back, and judge how it went."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    view = observe_host(host, federation.name, federation.namespace)
    target = evacuation(view.members, request.region, [])
    check_injectable(request.mode, target.members)
    lease, refusal = f"fleetflow-drill-{federation.name}", _busy(federation.name)
    brought_back = _brought_back(host, federation, request, lease, refusal)
    if brought_back:
        view = observe_host(host, federation.name, federation.namespace)  # as it is now
    seen, blocks = probe(view, federation, trust_watcher=False)
    floors = availability_floors(view.workloads, seen.found.members, target.survivors)
    drill = Drill(request, federation, host, view, target, blocks)
    drill.not_back = not_returning(view.workloads, seen.found.members, target.members)
    sampler = Sampler(blocks, federation.name, drill.names, federation.dns_server)
    drill.before = sampler.begin().answers
    failure: Exception | None = None
    try:
        with phased(host, drill.record(), drill.phases(), lease=lease, refusal=refusal) as run:
            drill.run(run, federation.health_policy())
    except Exception as exc:  # judged below with what was seen, then the run fails
        failure = exc
    finally:
        samples = sampler.stop()
        drill.heal_if_faulted()  # never leave a region down
    verdict = judge(
        request.region,
        request.mode,
        {**drill.marks(), Mark.DONE: _now()},  # the moments in order, then the end
        samples,
        floors,
        drill.addresses,
        Targets(detect=request.detect_target, recover=request.recover_target),
        failure=str(prefect_overloaded(failure) or failure) if failure else None,
        failover=Outcome.recorded(drill.failover.status.result) if drill.failover else None,
        not_back=drill.not_back,
    )
    verdict.brought_back = brought_back
    return _published(verdict)


def _brought_back(
    host: KubeCluster, federation: Federation, request: DrillRequest, lease: str, refusal: str
) -> list[str]:
    """Runbook step 0: bring back what drills whose runs died left (their region's clusters
    stopped, the region failed over) and close their records, so that this drill starts from a
    whole federation and measures its own fault. What each closed record says."""
    namespace, name = federation.namespace, federation.name
    me, duration = run_identity(), settings().lease_duration
    with holding(host, namespace, lease, me, duration=duration, refusal=refusal) as held:
        records = list_operations(host, namespace, name)
        registry = list_members(host, namespace, name)
        regions = {m.spec.region for m in registry if m.spec.region} & {
            str(op.parameters.get("region")) for op in records if op.procedure == "drill"
        }
        failovers = {
            r: read_operation(host, namespace, evacuation(registry, r, []).operation_name)
            for r in regions
        }
        left = abandoned(records, _record_name(request.region), failovers)
        said: list[str] = []
        if not left:
            return said
        BRING_BACK.step(ABANDONED)
        for drill in left:
            _bring_back(host, federation, request, registry, drill)
            held.check()
            message = drill.closing(me[:8])
            save_operation(host, ended(drill.record, Phase.FAILED, _now(), message))
            get_run_logger().info(f"{drill.record.name} closed: {message}")
            said.append(f"{drill.record.name} {message}")
        BRING_BACK.end()
    return said


def _bring_back(
    host: KubeCluster,
    federation: Federation,
    request: DrillRequest,
    registry: list[MemberCluster],
    drill: Abandoned,
) -> None:
    """Start the abandoned drill's faulted clusters again and, once the federation counts them
    Healthy again, fail its region back if it had failed it over."""
    get_run_logger().info(f"{drill.record.name}: its run died; bringing back region {drill.region}")
    region = [m.name for m in registry if m.spec.region == drill.region]
    if drill.region and region:
        drill.healed = heal(drill.mode, region)
    if drill.healed or drill.fail_back:
        _wait_counted_healthy(host, federation, region, request.recover_timeout)
    if not drill.fail_back:
        return
    regional_failback(
        FailbackRequest(
            federation=request.federation, region=drill.region, deadline=request.recover_timeout
        )
    )


def _published(verdict: Verdict) -> Verdict:
    """The verdict as an artifact and the run's final message; a missed objective fails the
    run."""
    create_markdown_artifact(
        markdown=verdict.markdown(), key="drill-verdict", description=f"drill {verdict.region}"
    )
    if not verdict.passed:
        raise PartialFailure("drill failed: " + "; ".join(verdict.missed()))
    return finished(verdict, verdict.summary())


def _busy(federation: str) -> str:
    return (
        f"another drill of federation {federation} is running; two never run at once: wait "
        "for it (if it crashed, its lease lapses and a new drill may start)"
    )


class Drill:
    """The drill's phases, carried out by the phased runner."""

    def __init__(
        self,
        request: DrillRequest,
        federation: Federation,
        host: KubeCluster,
        view: HostView,
        target: Evacuation,
        blocks: dict[str, KubeCluster | None],
    ) -> None:
        self.request, self.target, self.blocks = request, target, blocks
        self.host, self.namespace = host, federation.namespace
        self.federation, self.dns_server = federation.name, federation.dns_server
        self.region = {m: blocks[m] for m in target.members}
        # The names of the workloads that are there to come back: an endpoint whose workload
        # is being deleted (its namespace going) would never answer the region again.
        live = {
            fd.spec.dns.name(federation.dns_zone)
            for fd in view.workloads
            if fd.spec.dns and not fd.deleting
        }
        answers = expected_answers(list(view.endpoints.values()))
        self.names = sorted(n for n in answers if n in live)
        self.addresses = {
            a for m in view.members if m.name in target.members and (a := m.spec.ingress_address)
        }
        self.before: dict[str, list[str]] = {}
        """What DNS answered before the fault: each name must answer the region again."""
        self.not_back: dict[str, dict[str, str]] = {}
        """The region's members each workload does not return to, and why (its rules)."""
        self.names_of = {
            fd.key: fd.spec.dns.name(federation.dns_zone) for fd in view.workloads if fd.spec.dns
        }
        self.ingress = {m.name: m.spec.ingress_address for m in view.members}
        self.op: Operation | None = None
        self.failover: Operation | None = None
        self.faulted = False

    def record(self) -> Operation:
        """This drill's record: one per run (a retry of the run resumes it; a new drill
        starts afresh)."""
        return Operation(
            name=_record_name(self.target.region),
            namespace=self.namespace,
            procedure="drill",
            federation=self.federation,
            parameters={"region": self.target.region, "mode": self.request.mode.value},
        )

    def phases(self) -> tuple[str, ...]:
        return drill_phases(self.request.mode, bool(self.dns_server and self.names))

    def run(self, run: PhasedRun, policy: HealthPolicy) -> None:
        request, done = self.request, run.op.done
        self.op = run.op
        # A resumed drill may find its fault injected by the run it resumes, and not healed.
        self.faulted = request.mode is not DrillMode.FENCE and done("fault-injected")
        self.faulted = self.faulted and not done("healed")
        # What DNS answered before the fault, and what will not return, as the run that injected
        # it saw them.
        self.before = run.op.status.result.get("dnsBefore", self.before)
        self.not_back = run.op.status.result.get("notBack", self.not_back)
        try:
            run.phase("fault-injected", self._inject)
            if request.mode is not DrillMode.FENCE:
                run.phase("detected", lambda: self._health(policy, Health.UNHEALTHY))
            run.phase("failed-over", self._fail_over)
            run.phase("healed", self._heal)
            run.phase("recovered", lambda: self._health(policy, Health.HEALTHY))
            run.phase("failed-back", self._fail_back)
            if "dns-restored" in run.phases:
                run.phase("dns-restored", self._dns_restored)
        finally:
            self.op = run.op
            self.failover = read_operation.fn(self.host, self.namespace, self.target.operation_name)

    def _inject(self) -> Done:
        inject(self.request.mode, self.target.members)
        self.faulted = self.request.mode is not DrillMode.FENCE
        return Done(
            message=f"{self.request.mode.value} {', '.join(self.target.members)}",
            result={"dnsBefore": self.before, "notBack": self.not_back},
        )

    def _health(self, policy: HealthPolicy, want: Health) -> Done:
        timeout = (
            self.request.detect_timeout
            if want is Health.UNHEALTHY
            else self.request.recover_timeout
        )
        _wait_health(self.region, self.federation, policy, want, timeout)
        return Done()

    def _fail_over(self) -> Done:
        request = self.request
        if request.auto_failover:
            _wait_operation(
                self.host,
                self.namespace,
                self.target.operation_name,
                Phase.SUCCEEDED,
                request.recover_timeout,
            )
        else:
            regional_failover(
                FailoverRequest(
                    federation=request.federation,
                    region=request.region,
                    reason="drill",
                    deadline=request.recover_timeout,
                )
            )
        return Done()

    def _heal(self) -> Done:
        heal(self.request.mode, self.target.members)
        self.faulted = False
        return Done()

    def _fail_back(self) -> Done:
        request = self.request
        if request.auto_failover:
            _wait_operation(
                self.host,
                self.namespace,
                self.target.operation_name,
                Phase.REVERTED,
                request.recover_timeout,
            )
        else:
            regional_failback(
                FailbackRequest(
                    federation=request.federation,
                    region=request.region,
                    deadline=request.recover_timeout,
                )
            )
        return Done()

    def _dns_restored(self) -> Done:
        server, before, region = cast(str, self.dns_server), self.before, self.addresses
        not_back = {
            self.names_of[k]: [a for m in by_member if (a := self.ingress.get(m))]
            for k, by_member in self.not_back.items()
            if k in self.names_of
        }
        poll_until(
            lambda: answers_missing(
                before, {n: lookup(n, server).targets for n in self.names}, region, not_back
            ),
            lambda missing: not missing,
            timeout=self.request.recover_timeout,
            waiting_for="DNS to answer the region again where it did before the fault",
            describe=lambda missing: "; ".join(
                f"{n} without {', '.join(a)}" for n, a in missing.items()
            ),
        )
        return Done()

    def heal_if_faulted(self) -> None:
        if self.faulted:
            heal(self.request.mode, self.target.members)
            self.faulted = False

    def marks(self) -> dict[Mark, datetime]:
        op = self.op
        started = parse_stamp(op.status.started_at) if op else None
        steps = {s.name: at for s in (op.status.steps if op else []) if (at := parse_stamp(s.at))}
        return drill_marks(started or _now(), steps, _failover_marks(self.failover))


def _wait_counted_healthy(
    host: KubeCluster, federation: Federation, members: list[str], timeout: float
) -> None:
    """Wait until the federation counts ``members`` Healthy as its procedures do (the health
    watcher's record when one runs): a drill that began while its region was still counted
    out would find its workloads not returning there, and a failback would return nothing."""

    def counted() -> dict[str, Health]:
        view = observe_host.fn(host, federation.name, federation.namespace)
        seen, _ = probe(view, federation, trust_watcher=True)
        return {m: v.health.health for m, v in seen.found.members.items() if m in members}

    poll_until(
        counted,
        lambda health: all(h is Health.HEALTHY for h in health.values()),
        timeout=timeout,
        interval=1.0,
        waiting_for=f"the federation to count {', '.join(members)} Healthy again",
        describe=lambda health: ", ".join(f"{m}: {h.value}" for m, h in health.items()),
    )


def _record_name(region: str | None) -> str:
    """A drill's record is named for its run: a retry of the run resumes it."""
    return f"drill-{region}-{str(runtime.flow_run.id or 'local')[:8]}"


def _wait_health(
    blocks: dict[str, KubeCluster | None],
    federation: str,
    policy: HealthPolicy,
    want: Health,
    timeout: float,
) -> datetime:
    """Probe the members every second with the federation's policy until all are ``want``;
    return when they were."""
    states = {
        m: HealthState()
        if want is Health.UNHEALTHY
        else HealthState(health=Health.UNHEALTHY, consecutive_failures=policy.failure_threshold)
        for m in blocks
    }

    def look() -> dict[str, HealthState]:
        now = _now()
        for name, seen in probe_health(blocks, federation, timeout=2.0).items():
            states[name] = observe(states[name], seen.ok, policy, now)
        return dict(states)

    poll_until(
        look,
        lambda seen: all(s.health is want for s in seen.values()),
        timeout=timeout,
        interval=1.0,
        waiting_for=f"members {', '.join(blocks)} {want.value}",
        describe=lambda seen: ", ".join(f"{m}: {s.health.value}" for m, s in seen.items()),
    )
    return _now()


def _wait_operation(
    host: KubeCluster, namespace: str, name: str, phase: Phase, timeout: float
) -> Operation:
    """Wait for the automation's run to bring the operation record to ``phase``."""
    op = poll_until(
        lambda: read_operation.fn(host, namespace, name),  # a read every 0.5 s: no task runs
        lambda found: found is not None and found.status.phase is phase,
        timeout=timeout,
        interval=0.5,
        waiting_for=f"operation {name} {phase.value} (is the automation enabled?)",
    )
    return cast(Operation, op)


def _failover_marks(op: Operation | None) -> dict[Mark, datetime]:
    """When the survivors turned Ready and when DNS answered, as the failover recorded them."""
    found: dict[Mark, datetime] = {}
    for step in op.status.steps if op else []:
        at = parse_stamp(step.at)
        if at and step.name == "ready":
            found[Mark.SURVIVORS_READY] = at
        if at and step.name == "traffic-switched":
            found[Mark.DNS_SWITCHED] = at
    return found
