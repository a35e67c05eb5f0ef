"""Move a stateful workload, and its data, to the member where it should live.

Runbook (each phase recorded on the FederationOperation ``migrate-<namespace>-<name>`` before
the next begins, so a rerun after a crash resumes and never repeats a finished phase):
1. plan: score every member (data to move x cost, transfer time, cross-region reads, room,
   residency, health) and publish the table; a dry run stops here;
2. provisioned: hold the workload (rebalance and failover leave it as it runs), make its claims
   on the target and wait until they are bound;
3. pre-copied: rsync rounds while the source serves, until one moves little;
4. quiesced: predict the final sync from what changed since (more rounds while it would not
   fit the downtime budget), then scale the source to zero;
5. final-synced: the last pass, the source stopped;
6. verified: every file's sha256 on both sides must match;
7. cut-over: the point of no return, recorded before anything lets the target serve;
8. started: the placement names the target; a rebalance starts it there (make-before-break)
   and waits until it is Ready;
9. traffic-switched: its DNS name answers with the target (the federation's DNS server asked);
10. source-retained: the source's claims stay, with their data, until ``migrate-cleanup``.
Every phase from the final sync to the cut-over first checks that the source is still stopped
(a rollback that did not finish, or an operator, may have started it again: its new writes would
be lost). A failure before ``cut-over`` rolls back, recorded before it acts: the source serves
again, nothing of it is deleted, and a rerun resumes at the quiesce (the source's new writes are
copied then). After it, nothing rolls back: a rerun finishes on the target.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.task_runners import ThreadPoolTaskRunner

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import load_federation, load_host, load_member_cluster
from fleetflow.errors import (
    InvalidRequest,
    LeaseLost,
    MigrationHalted,
    OverBudget,
    RecordChanged,
    SourceServing,
    VerificationFailed,
    WaitTimeout,
)
from fleetflow.failpoints import Runbook
from fleetflow.flows.observe import probe
from fleetflow.flows.phases import Done, PhasedRun, phased
from fleetflow.flows.rebalance import rebalance_replicas
from fleetflow.flows.report import publish
from fleetflow.migration import (
    CUT_OVER,
    KEPT_ON_ROLLBACK,
    PHASES,
    MigrationPlan,
    claim_manifests,
    decide_migration,
    downtime,
    final_sync_fits,
    mismatches,
    operation_name,
    precopy_done,
    predicted_sync,
    throughput,
)
from fleetflow.models import CleanupRequest, MigrateRequest, RebalanceRequest, Report
from fleetflow.operations import Operation, parse_stamp, rolled_back, stamp, step_done
from fleetflow.rsync import Pass
from fleetflow.settings import settings
from fleetflow.tasks.host import list_members, observe_host
from fleetflow.tasks.leases import holding, rebalance_lease, run_identity
from fleetflow.tasks.member import unreachable_reason
from fleetflow.tasks.migrate import (
    Pairs,
    changed_since,
    check_retained,
    copy_round,
    delete_claims,
    discard_copies,
    hold_workload,
    manifests,
    provision_claims,
    refuse_foreign_claims,
    running_replicas,
    stop_workload,
    used_bytes,
    volume_pairs,
)
from fleetflow.tasks.operations import read_operation, save_operation
from fleetflow.tasks.rebalance import wait_members_ready
from fleetflow.tasks.traffic import switch_dns
from fleetflow.traffic import endpoint, record

RUNNER = ThreadPoolTaskRunner[Any](max_workers=settings().parallelism)
CLEANED = "source-cleaned"
CLEANUP = Runbook("migrate-cleanup", (CLEANED,))


@flow(name="migrate-workload", task_runner=RUNNER)  # type: ignore[arg-type]
def migrate_workload(request: MigrateRequest) -> Report:
    """Move a StatefulSet and its volumes: copy while it serves, a short stop, verify, cut over."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    key = f"{request.namespace}/{request.name}"
    view = observe_host(host, federation.name, federation.namespace, request.namespace)
    op = read_operation(host, federation.namespace, operation_name(request.namespace, request.name))
    if op is not None and op.finished:
        if not op.done(CLEANED):
            return _already(op, request, federation.name)
        op = None  # cleaned up: a new migration starts a new record
    seen, blocks = probe(view, federation, trust_watcher=False)
    record = op.parameters if op is not None else None
    matrix = federation.region_matrix()
    plan = decide_migration(seen, key, matrix, named=request.target, record=record)
    if plan.choice is not None and (source := blocks.get(plan.source)) is not None:
        # Scored again with what the claims hold: they may ask for far more than they use.
        used = used_bytes(source, plan.source, request.namespace, plan.claims)
        plan = decide_migration(seen, key, matrix, named=request.target, used=used)
    if record and request.target not in (None, plan.target):
        raise InvalidRequest(
            f"{key}: an unfinished migration to {plan.target} is on record; rerun without "
            f"--target (or with {plan.target}) to resume it"
        )
    if plan.choice is not None:
        _publish_choice(plan)
    if (target := blocks.get(plan.target)) is not None:
        claims = claim_manifests(plan.workload, plan.replicas, federation.name)
        refuse_foreign_claims(target, plan.target, claims)
    if request.dry_run:
        notes = plan.choice.lines() if plan.choice else [f"resumes the move to {plan.target}"]
        return publish(
            Report(procedure=f"migrate {key}", dry_run=True, notes=notes),
            key=f"migrate-{federation.name}",
            message=f"migrate {key}: would move from {plan.source} to {plan.target} (dry run)",
        )
    op = op or _record(plan, federation)
    ingress = {m.name: m.spec.ingress_address for m in view.members}
    reachable = {m: b for m, b in blocks.items() if b and seen.found.members[m].reachable}
    move = Move(federation, host, blocks, plan, request, ingress, reachable)
    lease = f"fleetflow-migrate-{request.namespace}-{request.name}"
    with phased(host, op, PHASES, lease=lease, refusal=_busy(key)) as run:
        move.check = run.check  # the copy stops at once should the run lose its lease
        try:
            run.phase("provisioned", move.provision)
            run.phase("pre-copied", move.precopy)
            if not request.cutover:
                run.pause(f"staged: pre-copied while {plan.source} serves; rerun to cut over")
                return _report(run, plan, federation.name)
            run.phase("quiesced", lambda: move.quiesce(run.op))
            run.phase("final-synced", move.final_sync)
            run.phase("verified", move.verify)
            run.phase(CUT_OVER, move.cut_over)
        except Exception as exc:
            move.roll_back(run, exc)
            raise
        run.phase("started", move.start)
        run.phase("traffic-switched", move.switch)
        run.phase("source-retained", move.retain)
    return _report(run, plan, federation.name)


def _record(plan: MigrationPlan, federation: Federation) -> Operation:
    return Operation(
        name=plan.operation_name,
        namespace=federation.namespace,
        procedure="migrate",
        federation=federation.name,
        parameters=plan.parameters(),
    )


def _busy(key: str) -> str:
    return (
        f"another migration of {key} is running; two never run at once: wait for it (if it "
        f"crashed, its lease lapses within {settings().lease_duration}s and a rerun resumes it)"
    )


def _already(op: Operation, request: MigrateRequest, federation: str) -> Report:
    """A finished migration whose source data is still kept: nothing to do, or clean first."""
    source, target = op.parameters.get("source"), op.parameters.get("target")
    key = f"{request.namespace}/{request.name}"
    if request.target not in (None, target):
        raise InvalidRequest(
            f"{key} was moved to {target} at {op.status.finished_at} and {source} still keeps "
            f"its data: run `fleetflow migrate-cleanup --namespace {request.namespace} --name "
            f"{request.name}` first, then migrate it again"
        )
    report = Report(
        procedure=f"migrate {key}",
        notes=[
            f"moved to {target} at {op.status.finished_at}; {source} keeps its data until "
            "migrate-cleanup"
        ],
    )
    return publish(
        report, key=f"migrate-{federation}", message=f"migrate {key}: already on {target}"
    )


def _publish_choice(plan: MigrationPlan) -> None:
    assert plan.choice is not None
    get_run_logger().info(
        f"{plan.workload.key}: {plan.source} -> {plan.target}, "
        f"{len(plan.choice.rows)} members scored (the migrate-plan artifact explains each)"
    )
    create_markdown_artifact(
        markdown=plan.choice.markdown(),
        key="migrate-plan",
        description=f"where {plan.workload.key} goes, and why",
    )


class Move:
    """The steps of one migration, each a phase's work."""

    def __init__(
        self,
        federation: Federation,
        host: KubeCluster,
        blocks: dict[str, KubeCluster | None],
        plan: MigrationPlan,
        request: MigrateRequest,
        ingress: dict[str, str | None],
        reachable: dict[str, KubeCluster],
    ) -> None:
        self.federation, self.host, self.plan, self.request = federation, host, plan, request
        self.source = _block(blocks, plan.source)
        self.target = _block(blocks, plan.target)
        self.members = reachable
        """The members that answered: every volume they report is out of the copy's way."""
        self.fd = plan.workload
        self.ingress = ingress
        self._pairs: Pairs | None = None
        self.rounds: list[Pass] = []
        self.check: Callable[[], None] = lambda: None
        """Raises once the run may no longer hold its lease: checked while copying."""

    @property
    def pairs(self) -> Pairs:
        """Per claim, the source's and the target's directories, resolved here (read once the
        claims exist); refused unless the mover may touch them: inside their declared roots,
        bound to these claims, apart from each other and from every volume the reachable
        members report."""
        if self._pairs is None:
            plan = self.plan
            self._pairs = volume_pairs(
                self.source,
                plan.source,
                self.target,
                plan.target,
                self.fd.namespace,
                plan.claims,
                self.members,
            )
        return self._pairs

    def _hold(self) -> None:
        hold_workload(self.host, self.fd, self.plan.operation_name, self.plan.clusters)

    def _place(self, clusters: list[str] | None) -> Report:
        """Release the hold with ``clusters`` as the placement, and let a rebalance of this
        workload carry it out (make-before-break, DNS following Ready replicas)."""
        hold_workload(self.host, self.fd, None, clusters)
        return rebalance_replicas(
            RebalanceRequest(
                federation=self.request.federation,
                namespace=self.fd.namespace,
                name=self.fd.name,
                max_moves=None,
                wait_timeout=self.request.deadline,
            )
        )

    def provision(self) -> Done:
        self._hold()
        claims = claim_manifests(self.fd, self.plan.replicas, self.federation.name)
        actions = provision_claims(
            self.target, self.plan.target, claims, self.request.deadline, False
        )
        return Done(actions=actions, message=f"{len(claims)} claims bound on {self.plan.target}")

    def _round(self, label: str) -> Pass:
        done = copy_round(self.pairs, label, self.request.bandwidth_mbps, self.check)
        self.rounds.append(done)
        get_run_logger().info(
            f"round {label}: {done.bytes:,} bytes in {done.files} files, {done.seconds:.1f}s"
        )
        return done

    def precopy(self) -> Done:
        threshold = int(self.request.precopy_threshold_mb * 1_000_000)
        while not precopy_done(self.rounds, threshold, self.request.max_precopy_rounds):
            self._round(f"{len(self.rounds) + 1}")
        return Done(
            message=", ".join(f"{r.bytes:,} B" for r in self.rounds),
            result={"precopy": [r.model_dump() for r in self.rounds]},
        )

    def quiesce(self, op: Operation) -> Done:
        """Stop the source once the final sync is predicted to fit the budget (until then,
        within the round limit, pre-copy more while it serves) and the target answers."""
        recorded = [Pass.model_validate(r) for r in op.status.result.get("precopy", [])]
        rate = throughput([*recorded, *self.rounds])
        link = self.federation.region_matrix().between(None, None)
        extra = 0
        while True:
            changed = changed_since(self.pairs)
            predicted = predicted_sync(changed.size, changed.seconds, rate, link)
            if final_sync_fits(predicted, self.request.downtime_budget):
                break
            if extra >= self.request.max_precopy_rounds:
                raise OverBudget(
                    f"the final sync would take ~{predicted:.1f}s ({changed.size:,} bytes "
                    f"changed), over the {self.request.downtime_budget:g}s downtime budget, after "
                    f"{extra} more pre-copy rounds: the source still serves; rerun when it writes "
                    "less, or give a larger --downtime-budget"
                )
            extra += 1
            self._round(f"top-up {extra}")
            rate = throughput([*recorded, *self.rounds])
        if reason := unreachable_reason(self.target):
            raise MigrationHalted(
                f"{self.plan.target} does not answer ({reason}): the source was not stopped and "
                "still serves; rerun once the target is back"
            )
        self._hold()  # again: a rollback released it, and a rerun resumes here
        # With the federation's rebalance lease: a rebalance that planned before the hold and
        # is still writing ends first (one after it sees the hold), so none restarts the
        # stopped source with the absolute count it planned.
        with holding(
            self.host,
            self.federation.namespace,
            rebalance_lease(self.federation.name),
            run_identity(),
            duration=settings().lease_duration,
            refusal=f"a rebalance of federation {self.federation.name} kept writing for over "
            f"{self.request.deadline:g}s: the source was not stopped and still serves; rerun",
            wait=self.request.deadline,
        ):
            at = datetime.now(UTC)
            stopped = stop_workload(
                self.source,
                self.plan.source,
                self.fd.namespace,
                self.fd.name,
                self.request.deadline,
            )
        return Done(
            actions=[stopped],
            message=f"final sync predicted {predicted:.2f}s ({changed.size:,} bytes changed)",
            result={"quiescedAt": stamp(at)},
        )

    def _still_stopped(self, step: str) -> None:
        """The source must not serve between its quiesce and the cut-over: a copy made or
        trusted while it writes would lose those writes."""
        ns, name = self.fd.namespace, self.fd.name
        if (n := running_replicas(self.source, ns, name)) > 0:
            raise SourceServing(
                f"{self.fd.key} runs {n} replica(s) on {self.plan.source} again after its "
                f"quiesce, before the {step}: its copy may miss new writes; the source keeps "
                "serving and a rerun quiesces it again"
            )

    def final_sync(self) -> Done:
        self._still_stopped("final sync")
        done = self._round("final")
        return Done(
            message=f"{done.bytes:,} bytes in {done.files} files, {done.seconds:.2f}s",
            result={"finalSync": done.model_dump()},
        )

    def verify(self) -> Done:
        self._still_stopped("verification")
        source, target = manifests(self.pairs)
        wrong = mismatches(source, target)
        if wrong:
            self.check()  # deleting files on the target: only while this run holds it
            discard_copies(self.pairs, [*wrong.differ, *wrong.extra])
            raise VerificationFailed(
                f"the copy on {self.plan.target} does not match the source: {wrong.summary()}; "
                "those copies were removed, and a rerun copies them again"
            )
        return Done(message=f"{len(source)} files match (sha256)", result={"files": len(source)})

    def cut_over(self) -> Done:
        """Record the point of no return, before the placement names the target: once any
        rebalance (this run's, or a scheduled one) may start the target and send it traffic,
        restarting the source on its quiesce-time data would lose what the target writes."""
        self._still_stopped("cut-over")
        return Done(message=f"{self.plan.target} takes over; nothing rolls back from here")

    def start(self) -> Done:
        """The placement names the target; a rebalance of this workload starts it there and
        removes the stopped source copy once the target is Ready (its claims stay)."""
        done = self._place([self.plan.target])
        ready = wait_members_ready(
            {self.plan.target: self.target}, {self.plan.target: {self.fd.key: 1}}, 0.1, False
        )
        if ready[self.plan.target].pending:
            raise WaitTimeout(
                f"{self.fd.key} is not Ready on {self.plan.target} after {self.request.deadline:g}s"
            )
        return Done(actions=done.actions, result={"servingAt": stamp(datetime.now(UTC))})

    def switch(self) -> Done:
        """Its DNS name to the target alone (the rebalance wrote it so from what it saw Ready;
        put right here if the stopped source was still counted); with the federation's DNS
        server known, wait until it answers so."""
        if self.fd.spec.dns is None:
            return Done(message="no DNS name to switch")
        name, zone = self.federation.name, self.federation.dns_zone
        wanted = endpoint(self.fd, record(self.fd, zone, [self.plan.target], self.ingress), name)
        server = self.federation.dns_server
        actions, answers = switch_dns(self.host, name, [wanted], server, self.request.deadline)
        return Done(
            actions=actions,
            message="; ".join(f"{n}: {a.summary()}" for n, a in (answers or {}).items()),
            result={"switchedAt": stamp(datetime.now(UTC))},
        )

    def retain(self) -> Done:
        claims = ", ".join(self.plan.claims)
        return Done(
            notes=[
                f"{self.plan.source} keeps {claims} with their data (the StatefulSet there is "
                "gone); `fleetflow migrate-cleanup` deletes them"
            ],
            result={"retained": self.plan.claims},
        )

    def roll_back(self, run: PhasedRun, exc: Exception) -> None:
        """Before the cut-over: record the rollback, then release the hold and let a rebalance
        of this workload start the source again (its placement names the source); nothing of it
        is deleted. Recorded first: should the rebalance fail once the source runs again, a
        rerun still quiesces it again instead of trusting the old final sync."""
        logger = get_run_logger()
        if run.op.done(CUT_OVER):  # a failure recording a later phase: the target took over
            logger.warning(f"{exc}: past the cut-over; not rolled back: rerun to finish")
            return
        if isinstance(exc, LeaseLost | RecordChanged):  # another run may act: hands off
            logger.warning(f"{exc}: not rolled back; the run holding the lease decides")
            return
        logger.warning(f"{type(exc).__name__}: {exc}; rolling back: the source serves again")
        try:
            run.check()
            run.op = save_operation(self.host, rolled_back(run.op, KEPT_ON_ROLLBACK))
        except Exception as unrecorded:  # never restart a source the record would not know of
            logger.error(
                f"rollback not recorded ({unrecorded}): the source stays stopped with all its "
                "data; rerun the migration once the host answers"
            )
            return
        try:
            self._place(self.plan.clusters)
        except Exception as undo:  # the first error is the one to tell; this one is logged
            logger.error(f"rollback incomplete: {undo}; rerun the migration to finish it")
            return
        if not isinstance(exc, MigrationHalted):
            logger.warning("rolled back; a rerun resumes at the quiesce")


def _block(blocks: dict[str, KubeCluster | None], member: str) -> KubeCluster:
    block = blocks.get(member)
    if block is None:
        raise InvalidRequest(f"member {member} has no credentials block: rejoin it")
    return block


def _report(run: PhasedRun, plan: MigrationPlan, federation: str) -> Report:
    """The report, the bytes of each round as a table, and the downtime in the final message."""
    result = run.op.status.result
    rounds = [Pass.model_validate(r) for r in result.get("precopy", [])]
    final = Pass.model_validate(result["finalSync"]) if "finalSync" in result else None
    named = [(f"pre-copy {i}", r) for i, r in enumerate(rounds, 1)]
    named += [("final sync", final)] if final is not None else []
    rows = [
        {"round": n, "bytes": r.bytes, "files": r.files, "seconds": round(r.seconds, 2)}
        for n, r in named
    ]
    create_table_artifact(table=rows, key="migrate-rounds", description=plan.workload.key)
    serving = parse_stamp(result.get("switchedAt") or result.get("servingAt"))
    stopped = downtime(parse_stamp(result.get("quiescedAt")), serving)
    key = plan.workload.key
    if run.paused:
        message = f"migrate {key}: staged on {plan.target}, {len(rounds)} pre-copy rounds"
    else:
        message = (
            f"migrate {key}: {plan.source} -> {plan.target}, {result.get('files', 0)} files "
            f"verified, {len(rounds)} pre-copy rounds, final sync {final.bytes if final else 0:,}"
            " bytes, downtime " + (f"{stopped:.2f}s" if stopped is not None else "unknown")
        )
    report = Report(procedure=f"migrate {key}", actions=run.actions, notes=[*run.notes, message])
    return publish(report, key=f"migrate-{federation}", message=message)


@flow(name="migrate-cleanup", task_runner=RUNNER)  # type: ignore[arg-type]
def cleanup_migration(request: CleanupRequest) -> Report:
    """Delete the claims (and their data) a finished migration kept on its source."""
    federation = load_federation(request.federation)
    host = load_host(federation)
    key = f"{request.namespace}/{request.name}"
    op = read_operation(host, federation.namespace, operation_name(request.namespace, request.name))
    if op is None or not op.finished:
        state = "no migration" if op is None else f"its migration is {op.status.phase}"
        raise InvalidRequest(f"{key}: {state}; only a finished migration's source is cleaned")
    report = Report(procedure=f"migrate-cleanup {key}", dry_run=request.dry_run)
    if op.done(CLEANED):
        report.notes.append(
            f"already cleaned at {next(s.at for s in op.status.steps if s.name == CLEANED)}"
        )
        return publish(report, key=f"migrate-cleanup-{federation.name}")
    member = str(op.parameters["source"])
    registry = {m.name: m for m in list_members(host, federation.namespace, federation.name)}
    if member not in registry:
        raise InvalidRequest(f"{key}'s source {member} is no member any more: clean it by hand")
    source = load_member_cluster(federation, registry[member])
    if running_replicas(source, request.namespace, request.name) > 0:
        raise InvalidRequest(
            f"{key} runs on {member} again: its claims are in use; nothing deleted"
        )
    claims = [str(c) for c in op.status.result.get("retained", [])]
    there = str(op.parameters["target"])
    if there not in registry:
        raise InvalidRequest(f"{key}'s target {there} is no member any more: clean it by hand")
    target = load_member_cluster(federation, registry[there])
    check_retained(source, member, target, there, request.namespace, claims)
    CLEANUP.step(CLEANED)
    report.actions = delete_claims(source, member, request.namespace, claims, request.dry_run)
    CLEANUP.end()
    if not request.dry_run:
        save_operation(host, step_done(op, CLEANED, datetime.now(UTC), f"{len(claims)} claims"))
    return publish(report, key=f"migrate-cleanup-{federation.name}")
