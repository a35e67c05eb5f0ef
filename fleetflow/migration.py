"""Data-aware migration, decided. Pure.

Where a stateful workload should go: every member is scored by what moving its data there
costs (bytes to move x the cost between the two regions), how long the copy takes (the bytes
over the link's bandwidth), what it reads across regions afterwards (its datasets that live
elsewhere) and its free room; residency rules, health, fences and room exclude members, each
with its reason. ``choose_target`` returns the best one and the table that explains them all.

How the copy goes: pre-copy rounds while the source serves until one moves little
(``precopy_done``), then, before the source is quiesced, the final sync's predicted length
against the downtime budget (``final_sync_fits``); afterwards the two sides' sha256 manifests
must match (``mismatches``), and the downtime is read from the record (``downtime``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from kubernetes.utils.quantity import parse_quantity
from pydantic import BaseModel, ConfigDict, Field

from fleetflow.capacity import replicas_that_fit
from fleetflow.controlplane import LABEL_FEDERATION, LABEL_MANAGED, MANAGED_BY, Manifest
from fleetflow.errors import InvalidRequest, MigrationRefused, UnknownName
from fleetflow.failpoints import declare
from fleetflow.federated import LABEL_WORKLOAD, DataSpec, FederatedDeployment
from fleetflow.rebalance import plan_workload
from fleetflow.rsync import Pass
from fleetflow.scheduling import Taint, Toleration, untolerated
from fleetflow.snapshot import Snapshot

GB = 1_000_000_000
MB = 1_000_000

PHASES: tuple[str, ...] = declare(
    "migrate",
    (
        "provisioned",
        "pre-copied",
        "quiesced",
        "final-synced",
        "verified",
        "cut-over",
        "started",
        "traffic-switched",
        "source-retained",
    ),
)
"""The phases a migration records, in order. Until ``cut-over`` is recorded the source holds the
data and a failure rolls back (the source serves again). ``cut-over`` is recorded before the
first write that lets the target serve (its placement); from then on the target holds the data
and nothing rolls back to the source: a rerun goes forward."""
CUT_OVER = "cut-over"
KEPT_ON_ROLLBACK = ("provisioned", "pre-copied")
"""What stays valid once a rolled-back source serves again: its new writes are picked up by the
next pre-copy round and the final sync, so a rerun resumes at the quiesce."""


class Link(BaseModel):
    """What moving data between two regions costs, both ways."""

    model_config = ConfigDict(frozen=True)

    source: str
    target: str
    cost_per_gb: float = Field(ge=0, description="Currency units per GB moved")
    mbps: float = Field(gt=0, description="Megabytes per second one copy achieves")


class RegionMatrix(BaseModel):
    """Cost and bandwidth between regions (defaults, and links that override them) and the
    residency rules: a workload's data labelled with a rule's name stays in its regions."""

    model_config = ConfigDict(frozen=True)

    cost_per_gb: float = Field(default=0.02, ge=0, description="Between two regions, per GB")
    mbps: float = Field(default=100.0, gt=0, description="Between two regions, MB/s")
    local_cost_per_gb: float = Field(default=0.0, ge=0, description="Within a region, per GB")
    local_mbps: float = Field(default=1000.0, gt=0, description="Within a region, MB/s")
    links: list[Link] = Field(default_factory=list, description="Pairs that differ")
    residency: dict[str, list[str]] = Field(
        default_factory=dict, description="Rule name -> the regions its data may live in"
    )

    def between(self, a: str | None, b: str | None) -> Link:
        for link in self.links:
            if {link.source, link.target} == {a, b} or (a == b == link.source == link.target):
                return link
        if a is not None and a == b:
            return Link(
                source=a, target=b, cost_per_gb=self.local_cost_per_gb, mbps=self.local_mbps
            )
        return Link(source=a or "?", target=b or "?", cost_per_gb=self.cost_per_gb, mbps=self.mbps)


class Volume(BaseModel):
    """One claim template of the workload: its name and the bytes each replica's claim asks
    for."""

    name: str
    requested: int


def claim_volumes(fd: FederatedDeployment) -> list[Volume]:
    """The workload's volumes, from its claim templates; none for a Deployment."""
    volumes = []
    for template in fd.claim_templates():
        meta = template.get("metadata") or {}
        requests = ((template.get("spec") or {}).get("resources") or {}).get("requests") or {}
        size = int(parse_quantity(requests.get("storage", "0")))
        volumes.append(Volume(name=meta.get("name", ""), requested=size))
    return volumes


def claim_names(fd: FederatedDeployment, replicas: int) -> list[str]:
    """The claims a StatefulSet's pods use, ``<template>-<statefulset>-<ordinal>``: a claim
    of that name made ahead on the target is the one its pod adopts."""
    return [
        f"{volume.name}-{fd.name}-{ordinal}"
        for volume in claim_volumes(fd)
        for ordinal in range(replicas)
    ]


def claim_manifests(fd: FederatedDeployment, replicas: int, federation: str) -> list[Manifest]:
    """The target's claims, made before its StatefulSet: as its claim templates say, under the
    names its pods will look for, labelled as ours."""
    manifests = []
    for template in fd.claim_templates():
        meta = template.get("metadata") or {}
        for ordinal in range(replicas):
            manifests.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {
                        "name": f"{meta.get('name', '')}-{fd.name}-{ordinal}",
                        "namespace": fd.namespace,
                        "labels": {
                            **(meta.get("labels") or {}),
                            LABEL_MANAGED: MANAGED_BY,
                            LABEL_FEDERATION: federation,
                            LABEL_WORKLOAD: fd.name,
                        },
                    },
                    "spec": dict(template.get("spec") or {}),
                }
            )
    return manifests


def foreign_claims(found: dict[str, Manifest], wanted: list[Manifest], where: str) -> str | None:
    """Why the claims already on the target cannot be taken (None: each is absent or ours).

    A claim of the name a migration would make, but without its labels, belongs to someone
    else: the copy's ``rsync --delete`` would replace its contents. It is refused, as
    propagation refuses an object it does not manage, before anything is written."""
    foreign = []
    for manifest in wanted:
        name = manifest["metadata"]["name"]
        if name not in found:
            continue
        labels = found[name]["metadata"].get("labels") or {}
        mine = manifest["metadata"]["labels"]
        if any(labels.get(k) != mine[k] for k in (LABEL_MANAGED, LABEL_FEDERATION, LABEL_WORKLOAD)):
            foreign.append(name)
    if not foreign:
        return None
    namespace = wanted[0]["metadata"]["namespace"]
    return (
        f"{where} already has claim(s) {', '.join(foreign)} in {namespace} that this migration "
        "did not make (no fleetflow labels for this workload): the copy would replace what they "
        "hold; delete or rename them, or migrate to another member; nothing was changed"
    )


def moved_placement(fd: FederatedDeployment, target: str) -> FederatedDeployment:
    """The workload as it is once moved: its placement names the target alone."""
    placement = fd.spec.placement.model_copy(update={"clusters": [target]})
    return fd.model_copy(update={"spec": fd.spec.model_copy(update={"placement": placement})})


def check_migratable(fd: FederatedDeployment) -> None:
    """A workload migration can move: a StatefulSet whose claim templates declare its data."""
    if fd.kind != "StatefulSet":
        raise InvalidRequest(
            f"{fd.key} is a {fd.kind}: it has no volumes of its own to move; migrate moves a "
            "StatefulSet with volumeClaimTemplates (rebalance moves the replicas of a Deployment)"
        )
    if not claim_volumes(fd):
        raise InvalidRequest(
            f"{fd.key} declares no volumes: add volumeClaimTemplates to its template "
            "(migrate moves the data in them)"
        )


class Candidate(BaseModel):
    """A member as migration sees it."""

    name: str
    region: str | None = None
    placeable: bool = True
    fenced: bool = False
    room: int | None = None
    """Replicas of the workload its free capacity holds (unknown: not probed)."""
    taints: list[Taint] = Field(default_factory=list)


class Score(BaseModel):
    """One member's line in the table: what moving there costs, or why it cannot be."""

    member: str
    region: str | None
    move_bytes: int = 0
    move_cost: float = 0.0
    transfer_seconds: float = 0.0
    remote_read_gb: float = 0.0
    read_cost: float = 0.0
    room: int | None = None
    excluded: str | None = None
    chosen: bool = False

    @property
    def cost(self) -> float:
        return self.move_cost + self.read_cost

    def order(self) -> tuple[float, float, int, str]:
        return (round(self.cost, 6), self.transfer_seconds, -(self.room or 0), self.member)


class Choice(BaseModel):
    """Where the workload goes, and every member's score."""

    workload: str
    source: str
    source_region: str | None
    target: str
    data_bytes: int
    rows: list[Score]

    def markdown(self) -> str:
        head = (
            f"## migrate {self.workload}: {self.source} ({self.source_region or '?'}) -> "
            f"{self.target}\n\n{_size(self.data_bytes)} of volumes to move.\n\n"
            "| member | region | move | move cost | transfer | cross-region reads | read cost "
            "| room | total | verdict |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- "
            "| --- |"
        )
        return "\n".join([head, *(_row(s) for s in self.rows)])

    def lines(self) -> list[str]:
        """The table for a terminal: one line per member."""
        return [
            f"{s.member:<14} {s.region or '?':<12} "
            + (
                f"excluded: {s.excluded}"
                if s.excluded
                else f"cost {s.cost:8.4f}  move {_size(s.move_bytes):>9} in "
                f"~{s.transfer_seconds:.1f}s  reads {s.remote_read_gb:g} GB elsewhere  "
                f"room {s.room if s.room is not None else '?'}"
                + ("  <- target" if s.chosen else "")
            )
            for s in self.rows
        ]


def _size(n: int) -> str:
    for unit, scale in (("GB", GB), ("MB", MB), ("kB", 1000)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _row(s: Score) -> str:
    verdict = "target" if s.chosen else f"excluded: {s.excluded}" if s.excluded else "fits"
    if s.excluded:
        return f"| {s.member} | {s.region or '?'} | | | | | | | | {verdict} |"
    return (
        f"| {s.member} | {s.region or '?'} | {_size(s.move_bytes)} | {s.move_cost:.4f} "
        f"| {s.transfer_seconds:.1f}s | {s.remote_read_gb:g} GB | {s.read_cost:.4f} "
        f"| {s.room if s.room is not None else '?'} | {s.cost:.4f} | {verdict} |"
    )


def data_bytes(volumes: Sequence[Volume], replicas: int, used: int | None = None) -> int:
    """The bytes to move: what the claims hold (``used``) once measured, else what they ask
    for."""
    return used if used is not None else sum(v.requested * replicas for v in volumes)


def choose_target(
    fd: FederatedDeployment,
    source: Candidate,
    members: Sequence[Candidate],
    matrix: RegionMatrix,
    replicas: int,
    *,
    used: int | None = None,
    named: str | None = None,
) -> Choice:
    """Score every member but the source; the cheapest that fits is the target (or ``named``,
    if it fits). Nothing fits: ``MigrationRefused`` says why each member was excluded.
    ``used``: the bytes the claims hold (else what they ask for is scored)."""
    data = fd.spec.data or DataSpec()
    allowed: set[str] | None = None
    if data.residency is not None:
        if data.residency not in matrix.residency:
            raise InvalidRequest(
                f"{fd.key}: residency {data.residency!r} is not a rule of this federation "
                f"(rules: {', '.join(sorted(matrix.residency)) or 'none'}); add it to the "
                "Federation block's regions.residency, or fix spec.data.residency"
            )
        allowed = set(matrix.residency[data.residency])
    if named is not None and named == source.name:
        raise InvalidRequest(f"{fd.key} already runs on {named}: name another target")
    if named is not None and named not in {m.name for m in members}:
        known = ", ".join(sorted(m.name for m in members)) or "none"
        raise InvalidRequest(f"no member {named!r} in this federation (members: {known})")
    moving = data_bytes(claim_volumes(fd), replicas, used)
    if allowed is not None and source.region not in allowed:
        allowed_text = ", ".join(sorted(allowed))
        note = f" (it runs in {source.region}, outside {allowed_text}: moving it fixes that)"
    else:
        note = ""
    rows = [
        _score(m, source, data, allowed, matrix, replicas, moving, fd.spec.placement.tolerations)
        for m in members
        if m.name != source.name
    ]
    fits = sorted((r for r in rows if r.excluded is None), key=Score.order)
    if named is not None:
        picked = next(r for r in rows if r.member == named)
        if picked.excluded:
            raise MigrationRefused(f"{fd.key} cannot move to {named}: {picked.excluded}{note}")
    elif not fits:
        why = "; ".join(f"{r.member}: {r.excluded}" for r in rows) or "no other member"
        raise MigrationRefused(f"no member can take {fd.key}: {why}")
    else:
        picked = fits[0]
    rows = [r.model_copy(update={"chosen": r.member == picked.member}) for r in rows]
    ordered = sorted(rows, key=lambda r: (r.excluded is not None, r.order()))
    return Choice(
        workload=fd.key,
        source=source.name,
        source_region=source.region,
        target=picked.member,
        data_bytes=moving,
        rows=ordered,
    )


def _score(
    member: Candidate,
    source: Candidate,
    data: DataSpec,
    allowed: set[str] | None,
    matrix: RegionMatrix,
    replicas: int,
    moving: int,
    tolerations: Sequence[Toleration],
) -> Score:
    score = Score(member=member.name, region=member.region, room=member.room)
    if not member.placeable:
        return score.model_copy(update={"excluded": "not healthy"})
    if member.fenced:
        return score.model_copy(update={"excluded": "fenced (a failover evacuated it)"})
    if allowed is not None and member.region not in allowed:
        rule = f"residency {data.residency!r} keeps the data in {', '.join(sorted(allowed))}"
        return score.model_copy(update={"excluded": f"region {member.region or '?'}: {rule}"})
    if member.room is not None and member.room < replicas:
        return score.model_copy(
            update={"excluded": f"room for {member.room} of {replicas} replicas"}
        )
    # The target is written as the workload's only cluster: a taint it does not tolerate
    # would leave every replica unplaced after the source stopped.
    if blocked := untolerated(member.taints, tolerations):
        why = f"taint {blocked[0].text()} not tolerated (add a toleration to spec.placement)"
        return score.model_copy(update={"excluded": why})
    link = matrix.between(source.region, member.region)
    remote = [d for d in data.datasets if d.region != member.region]
    return score.model_copy(
        update={
            "move_bytes": moving,
            "move_cost": moving / GB * link.cost_per_gb,
            "transfer_seconds": moving / MB / link.mbps,
            "remote_read_gb": sum(d.size_gb for d in remote),
            "read_cost": sum(
                d.size_gb * matrix.between(d.region, member.region).cost_per_gb for d in remote
            ),
        }
    )


def precopy_done(rounds: Sequence[Pass], threshold: int, limit: int) -> bool:
    """Pre-copying stops once a round moved at most ``threshold`` bytes, or after ``limit``
    rounds: the next would move about what changed during the last."""
    return bool(rounds) and (rounds[-1].bytes <= threshold or len(rounds) >= limit)


def throughput(rounds: Sequence[Pass]) -> float | None:
    """Bytes per second the copies achieved, from the rounds that moved at least 1 MB."""
    big = [r for r in rounds if r.bytes >= MB and r.seconds > 0]
    if not big:
        return None
    return sum(r.bytes for r in big) / sum(r.seconds for r in big)


def predicted_sync(changed: int, scan_seconds: float, rate: float | None, link: Link) -> float:
    """Seconds a final sync would take: finding the changes (a dry run's time) plus moving them
    at the measured rate (the link's nominal one before anything was measured)."""
    return scan_seconds + changed / (rate or link.mbps * MB)


def final_sync_fits(predicted: float, budget: float) -> bool:
    return predicted <= budget


class Mismatch(BaseModel):
    """Where the two sides' manifests differ (relative paths)."""

    missing: list[str] = Field(default_factory=list)
    extra: list[str] = Field(default_factory=list)
    differ: list[str] = Field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.differ)

    def summary(self) -> str:
        parts = [
            f"{label} {len(paths)} ({', '.join(sorted(paths)[:3])}"
            + (", ...)" if len(paths) > 3 else ")")
            for label, paths in (
                ("missing on the target:", self.missing),
                ("only on the target:", self.extra),
                ("different content:", self.differ),
            )
            if paths
        ]
        return "; ".join(parts)


def mismatches(source: Mapping[str, str], target: Mapping[str, str]) -> Mismatch:
    """Compare two manifests (relative path -> sha256)."""
    return Mismatch(
        missing=sorted(set(source) - set(target)),
        extra=sorted(set(target) - set(source)),
        differ=sorted(p for p in set(source) & set(target) if source[p] != target[p]),
    )


class MigrationPlan(BaseModel):
    """What a migration does, decided from one look at the federation (or, resumed, from its
    record: the source may be stopped by then, and the target must not change mid-way)."""

    workload: FederatedDeployment
    source: str
    target: str
    replicas: int
    claims: list[str]
    clusters: list[str] | None
    """The placement's clusters before the move: what a rollback restores."""
    choice: Choice | None = None
    """The scored table (a fresh plan; a resumed one keeps the target its record names)."""

    @property
    def operation_name(self) -> str:
        return operation_name(self.workload.namespace, self.workload.name)

    def parameters(self) -> dict[str, object]:
        return {
            "workload": self.workload.key,
            "source": self.source,
            "target": self.target,
            "replicas": self.replicas,
            "claims": self.claims,
            "clusters": self.clusters,
        }


def operation_name(namespace: str, name: str) -> str:
    """One record per workload: a second request for the same move meets the first."""
    return f"migrate-{namespace}-{name}"


def find_workload(workloads: Sequence[FederatedDeployment], key: str) -> FederatedDeployment:
    for fd in workloads:
        if fd.key == key:
            return fd
    known = ", ".join(sorted(fd.key for fd in workloads)) or "none"
    raise UnknownName(f"no FederatedDeployment {key} in this federation (workloads: {known})")


def decide_migration(
    seen: Snapshot,
    key: str,
    matrix: RegionMatrix,
    *,
    named: str | None,
    record: Mapping[str, object] | None = None,
    used: int | None = None,
) -> MigrationPlan:
    """Where ``key`` moves from and to. ``record``: the parameters of its unfinished
    operation, which a resumed run keeps to; ``used``: the bytes its claims hold, once
    measured on the source (else the claims' requested size is scored)."""
    fd = find_workload(seen.view.workloads, key)
    check_migratable(fd)
    if record:
        replicas, clusters = int(str(record["replicas"])), record.get("clusters")
        return MigrationPlan(
            workload=fd,
            source=str(record["source"]),
            target=str(record["target"]),
            replicas=replicas,
            claims=claim_names(fd, replicas),
            clusters=[str(c) for c in clusters] if isinstance(clusters, list) else None,
        )
    if fd.deleting:
        raise InvalidRequest(f"{key} is being deleted: there is nothing to migrate")
    if fd.spec.replicas < 1:
        raise InvalidRequest(f"{key} has 0 replicas: scale it up first (migrate moves data in use)")
    running = sorted(
        m
        for m, view in seen.found.members.items()
        if (live := view.deployments.get(key)) is not None and live.replicas > 0
    )
    if len(running) != 1:
        where = ", ".join(running) or "no member"
        raise InvalidRequest(
            f"{key} runs on {where}: migrate moves a workload that runs on one member "
            "(set its placement to one cluster first)"
        )
    regions = {m.name: m.spec.region for m in seen.view.members}
    per_replica = fd.per_replica()
    candidates = [
        Candidate(
            name=name,
            region=regions.get(name),
            placeable=view.health.placeable and view.reachable,
            fenced=view.fenced,
            room=replicas_that_fit(view.free, per_replica) if view.free is not None else None,
            taints=view.taints,
        )
        for name, view in sorted(seen.found.members.items())
    ]
    source = next(c for c in candidates if c.name == running[0])
    choice = choose_target(fd, source, candidates, matrix, fd.spec.replicas, named=named, used=used)
    # The cut-over plans the moved workload with the scheduler rebalance uses: plan it so now,
    # before anything is copied or stopped, for the rules the table does not score (a spread,
    # affinity groups, a cluster selector).
    moved = plan_workload(moved_placement(fd, choice.target), seen.found.members)
    if moved.error or moved.unplaced:
        why = moved.error or f"{moved.unplaced} of {fd.spec.replicas} replicas stay unplaced"
        raise MigrationRefused(f"{why}: migrate sets placement.clusters to {choice.target} alone")
    return MigrationPlan(
        workload=fd,
        source=source.name,
        target=choice.target,
        replicas=fd.spec.replicas,
        claims=claim_names(fd, fd.spec.replicas),
        clusters=fd.spec.placement.clusters,
        choice=choice,
    )


def downtime(quiesced_at: datetime | None, serving_at: datetime | None) -> float | None:
    """Seconds from the source's stop to the target serving (Ready, and DNS answering)."""
    if quiesced_at is None or serving_at is None:
        return None
    return (serving_at - quiesced_at).total_seconds()
