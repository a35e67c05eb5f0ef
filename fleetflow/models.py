"""Models at the edges: flow parameters (rendered as forms in the Prefect UI) and reports.

Parameters name credentials blocks; they never carry a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from fleetflow.drill import DrillMode
from fleetflow.scheduling import TAINT_PATTERN, Taint
from fleetflow.settings import settings

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


def _matching(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A validator that says, on the CLI, what a name that does not match ``pattern`` is not."""

    def check(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


def _form(pattern: re.Pattern[str], longest: int) -> Any:
    """The form's schema for a name: the server refuses a bad one before a run exists."""
    return Field(json_schema_extra={"pattern": pattern.pattern, "maxLength": longest})


DnsLabel = Annotated[
    str,
    AfterValidator(
        _matching(
            DNS_LABEL,
            "a DNS label: use lowercase letters, digits and '-', at most 63 characters, "
            "starting and ending with a letter or digit",
        )
    ),
    _form(DNS_LABEL, 63),
]
"""A namespace, member, region or federation name: safe in a URL path as it is."""

DnsSubdomain = Annotated[
    str,
    AfterValidator(
        _matching(
            DNS_SUBDOMAIN,
            "a Kubernetes object name: use lowercase letters, digits, '-' and '.', at most 253 "
            "characters, starting and ending with a letter or digit",
        )
    ),
    _form(DNS_SUBDOMAIN, 253),
]
"""An object's name (a Deployment's may hold dots): safe in a URL path as it is."""


class BlockKind(StrEnum):
    """The Prefect block types fleetflow's parameters name (by block type slug)."""

    FEDERATION = "fleetflow-federation"
    CLUSTER = "fleetflow-kube-cluster"


@dataclass(frozen=True)
class BlockRef:
    """Marks a parameter that names a saved block, so callers can check the name before a run
    starts, and the Prefect UI renders a picker of the saved blocks of that kind.

    The picker sends ``{"$ref": {"block_document_id": ...}}``; Prefect loads that block before
    the flow's parameters are validated, so the field accepts a loaded block and keeps its saved
    name: the CLI, the API and the UI all end with the same request, a block name.
    """

    kind: BlockKind

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(_saved_name, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # No "type": the server validates parameters against this schema before it creates a
        # run, and must accept the picker's reference as well as a name typed through the API.
        found = handler(schema)
        return {
            **{k: v for k, v in found.items() if k not in ("type", "anyOf", "minLength")},
            "block_type_slug": self.kind.value,
        }


def _saved_name(value: Any) -> Any:
    # Duck-typed: the core never imports Prefect, and only a loaded block carries this name.
    return getattr(value, "_block_document_name", None) or value


FederationBlock = Annotated[str, Field(min_length=1), BlockRef(BlockKind.FEDERATION)]
"""The name of a saved Federation block."""
ClusterBlock = Annotated[str, Field(min_length=1), BlockRef(BlockKind.CLUSTER)]
"""The name of a saved KubeCluster block."""
OptionalClusterBlock = Annotated[str | None, BlockRef(BlockKind.CLUSTER)]
"""The name of a saved KubeCluster block, or none: one picker that may stay empty."""


def block_refs(model: type[BaseModel]) -> dict[str, BlockKind]:
    """The fields of a request that name blocks, and of which kind."""
    found = {}
    for name, field in model.model_fields.items():
        for meta in field.metadata:
            if isinstance(meta, BlockRef):
                found[name] = meta.kind
    return found


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BootstrapRequest(Request):
    """Install a federation's control plane in its host cluster."""

    federation: DnsLabel = Field(description="Federation name; also its Federation block's name")
    host_cluster: ClusterBlock = Field(description="KubeCluster block of the host cluster")
    namespace: DnsLabel = Field(default="fleetflow-system", description="Namespace in the host")
    dns_zone: str = Field(
        default="fleet.local",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)*[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="DNS zone for traffic records, e.g. apps.example.com",
    )
    dns_server: str | None = Field(
        default=None,
        pattern=r"^[^\s:]+(:[0-9]{1,5})?$",
        description="HOST:PORT of a DNS server answering for the zone, to verify switches",
    )
    move_host: bool = Field(
        default=False,
        description="Let an existing federation's block name another host cluster (without "
        "it, a rerun naming another host is refused: its registry, operations and workloads "
        "stay on the old one)",
    )
    dry_run: bool = Field(default=False, description="List what would change; write nothing")


class JoinRequest(Request):
    """Join a cluster to a federation with its own least-privilege credentials."""

    federation: FederationBlock = Field(description="Federation block")
    member: DnsLabel = Field(description="Name of the new member")
    # Declared after ``member``: its default is read from the validated member name.
    admin_block: ClusterBlock = Field(
        default_factory=lambda data: data.get("member"),
        description="KubeCluster block with admin rights, used only to join "
        "(default: the block named like the member)",
    )
    region: DnsLabel | None = Field(default=None, description="e.g. us-east")
    zone: str | None = Field(default=None, description="e.g. us-east-1a")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels for placement")
    ingress_address: str | None = Field(default=None, description="Where its traffic lands")
    namespaces: list[DnsLabel] = Field(
        default_factory=list,
        description="Existing namespaces of this member to open to the federation (a room: "
        "its account may write there) and whose Secrets it may propagate: each gets the room "
        "label and a Role on Secrets for the member's token (created, at the federation's Pod "
        "Security level, if absent). New namespaces fleetflow opens itself, without Secrets; "
        "a rejoin with another list moves the Roles",
    )
    dry_run: bool = Field(default=False, description="List what would change; write nothing")


class UnjoinRequest(Request):
    """Remove a member from a federation."""

    federation: FederationBlock = Field(description="Federation block")
    member: DnsLabel = Field(description="Member to remove")
    keep_workloads: bool = Field(
        default=True, description="Keep what was propagated to the member (else delete it)"
    )
    force: bool = Field(
        default=False,
        description="Remove the registration and block even if the member cannot be reached, "
        "a workload can run nowhere else, or a placement names it",
    )
    admin_block: OptionalClusterBlock = Field(
        default=None,
        description="Admin KubeCluster block to remove the service account, roles and namespace;"
        " without it the member's tokens are revoked and those objects reported as left behind",
    )


class RotateRequest(Request):
    """Replace a member's token with a new one and revoke the old."""

    federation: FederationBlock = Field(description="Federation block")
    member: DnsLabel = Field(description="Member whose token to rotate")


class TaintRequest(Request):
    """Set or lift a member's taints: a workload that does not tolerate one stays off it."""

    federation: FederationBlock = Field(description="Federation block")
    member: DnsLabel = Field(description="Member to taint")
    add: list[str] = Field(
        default_factory=list,
        description="Taints to set, KEY[=VALUE]:EFFECT; NoSchedule: no new replicas there, "
        "NoExecute: the next rebalances move its replicas away (make-before-break)",
        # The form's schema: the server refuses a malformed taint before a run exists (the
        # validator below says what is wrong on the CLI).
        json_schema_extra={"items": {"type": "string", "pattern": TAINT_PATTERN}},
    )
    remove: list[str] = Field(
        default_factory=list, description="Taints to lift: KEY (every effect) or KEY:EFFECT"
    )
    dry_run: bool = Field(default=False, description="Show the taints it would set; write nothing")

    @field_validator("add")
    @classmethod
    def _taints(cls, values: list[str]) -> list[str]:
        for value in values:
            taint = Taint.parse(value)
            if taint.key.startswith("fleetflow.io/"):
                raise ValueError(
                    f"taint {value!r}: keys under fleetflow.io/ are fleetflow's own "
                    "(a fence is set by failover)"
                )
        return values

    @model_validator(mode="after")
    def _something(self) -> TaintRequest:
        if not self.add and not self.remove:
            raise ValueError("give a taint to --add or one to --remove")
        return self

    def taints(self) -> list[Taint]:
        return [Taint.parse(v) for v in self.add]


class RebalanceRequest(Request):
    """Plan and apply replica placement for the federated workloads."""

    federation: FederationBlock = Field(description="Federation block")
    namespace: DnsLabel | None = Field(default=None, description="Only workloads in this namespace")
    name: DnsSubdomain | None = Field(default=None, description="Only the workload of this name")
    labels: dict[str, str] = Field(default_factory=dict, description="Only workloads with these")
    max_moves: int | None = Field(
        default=10,
        ge=1,
        description="Most replicas moved between healthy members per workload per run "
        "(failback); replicas of an unhealthy member always move",
    )
    wait_timeout: float = Field(
        default_factory=lambda: settings().wait_timeout,
        gt=0,
        description="Seconds to wait for scaled-up members to be ready "
        "before scaling others down (make-before-break)",
    )
    dry_run: bool = Field(default=False, description="Publish the plan; write nothing")


class FailoverRequest(Request):
    """Evacuate a region (or some members), make-before-break, and move its traffic."""

    federation: FederationBlock = Field(description="Federation block")
    region: DnsLabel | None = Field(default=None, description="Region to evacuate, e.g. us-east")
    members: list[DnsLabel] = Field(
        default_factory=list, description="Members to evacuate, instead of a region"
    )
    reason: str = Field(default="", max_length=200, description="Why: recorded on the operation")
    deadline: float = Field(
        default_factory=lambda: settings().wait_timeout,
        gt=0,
        description="Seconds for the survivors' new replicas to turn Ready",
    )
    dry_run: bool = Field(default=False, description="Publish the plan; write nothing")


class FailbackRequest(Request):
    """Return replicas and traffic to a recovered region, rate-limited."""

    federation: FederationBlock = Field(description="Federation block")
    region: DnsLabel | None = Field(default=None, description="Region to return to")
    members: list[DnsLabel] = Field(
        default_factory=list, description="Members to return to, instead of a region"
    )
    max_moves: int = Field(
        default=10, ge=1, description="Most replicas moved back per workload per round"
    )
    deadline: float = Field(
        default_factory=lambda: settings().wait_timeout,
        gt=0,
        description="Seconds for each round's replicas to turn Ready",
    )
    dry_run: bool = Field(default=False, description="Publish the plan; write nothing")


class MigrateRequest(Request):
    """Move a stateful workload, and its data, to the member where it should live."""

    federation: FederationBlock = Field(description="Federation block")
    namespace: DnsLabel = Field(description="Namespace of the FederatedDeployment")
    name: DnsLabel = Field(description="The FederatedDeployment (kind StatefulSet) to move")
    target: DnsLabel | None = Field(
        default=None,
        description="Member to move to (default: the best scored; the table shows them all)",
    )
    downtime_budget: float = Field(
        default=10.0,
        gt=0,
        description="Most seconds the final sync may keep the workload stopped, as predicted "
        "before the source is quiesced; more pre-copy rounds run first, else it stops and says so",
    )
    precopy_threshold_mb: float = Field(
        default=8.0, ge=0, description="Pre-copying stops once a round moves at most this (MB)"
    )
    max_precopy_rounds: int = Field(
        default=5, ge=1, le=50, description="Most pre-copy rounds while the source serves"
    )
    bandwidth_mbps: float | None = Field(
        default=None, gt=0, description="Cap on the copy's bandwidth, MB/s (default: none)"
    )
    cutover: bool = Field(
        default=True,
        description="Off: provision and pre-copy while the source serves, then stop (a staged "
        "run); a later run resumes from there and cuts over",
    )
    deadline: float = Field(
        default_factory=lambda: settings().wait_timeout,
        gt=0,
        description="Seconds for claims to bind, the source to stop and the target to turn Ready",
    )
    dry_run: bool = Field(
        default=False, description="Score the members and publish the table; change nothing"
    )


class CleanupRequest(Request):
    """Delete the source's data a finished migration kept."""

    federation: FederationBlock = Field(description="Federation block")
    namespace: DnsLabel = Field(description="Namespace of the migrated FederatedDeployment")
    name: DnsLabel = Field(description="The migrated FederatedDeployment")
    dry_run: bool = Field(default=False, description="List the claims it would delete")


class WatchRequest(Request):
    """Watch the members' health for a while: probe, apply hysteresis, record, announce."""

    federation: FederationBlock = Field(description="Federation block")
    probe_interval: float = Field(
        default=2.0, gt=0, le=60, description="Seconds between two rounds of probes"
    )
    probe_timeout: float = Field(
        default=2.0, gt=0, le=30, description="Seconds one probe request may take"
    )
    watch_seconds: float = Field(
        default=630.0,
        gt=0,
        description="Seconds this run watches, from its scheduled start; longer than the "
        "schedule's interval, so that the next run is waiting to take over",
    )
    lease_seconds: int = Field(
        default=15,
        ge=3,
        le=300,
        description="A watcher that stops renewing its lease for this long (a crash) is "
        "replaced by the next one waiting",
    )


class DrillRequest(Request):
    """Fault a region, fail it over and back, and publish a verdict."""

    federation: FederationBlock = Field(description="Federation block")
    region: DnsLabel = Field(description="Region to drill, e.g. eu-west")
    mode: DrillMode = Field(
        default=DrillMode.STOP_CLUSTERS,
        description="stop-clusters or kill-apiservers: a real fault (test bed only); "
        "fence: no fault, the region is only fenced (real clusters)",
    )
    auto_failover: bool = Field(
        default=False,
        description="Let the auto-failover automation fail over and back (it must be on); "
        "off: the drill runs the failover and failback itself",
    )
    detect_timeout: float = Field(default=90, gt=0, description="Seconds to wait for detection")
    recover_timeout: float = Field(
        default=180, gt=0, description="Seconds for each failover, recovery and failback step"
    )
    detect_target: float = Field(
        default=30, gt=0, description="Objective: seconds from the fault to detection"
    )
    recover_target: float = Field(
        default=20,
        gt=0,
        description="Objective: seconds from the failover's start to survivors Ready and DNS",
    )


class Verb(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    DELETE = "delete"
    ABSENT = "absent"
    LEFT_BEHIND = "left behind"


class Action(BaseModel):
    """One object a procedure created, changed, kept, deleted, or had to leave behind."""

    cluster: str
    kind: str
    name: str
    namespace: str | None = None
    verb: Verb

    @classmethod
    def of(cls, cluster: str, manifest: dict[str, Any], verb: Verb | str) -> Action:
        """The action on the object a manifest describes."""
        meta = manifest["metadata"]
        return cls(
            cluster=cluster,
            kind=manifest["kind"],
            name=meta["name"],
            namespace=meta.get("namespace"),
            verb=Verb(verb),
        )

    def line(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.cluster}: {self.verb.value} {self.kind} {where}{self.name}"


class Report(BaseModel):
    """What a procedure did (or with dry-run, would do)."""

    procedure: str
    dry_run: bool = False
    actions: list[Action] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def writes(self) -> list[Action]:
        writes = (Verb.CREATE, Verb.UPDATE, Verb.DELETE)
        return [a for a in self.actions if a.verb in writes]

    def summary(self) -> str:
        """One line for the run's final state: what was (or would be) written, and where."""
        writes = self.writes()
        if not writes:
            return f"{self.procedure}: nothing to change" + (" (dry run)" if self.dry_run else "")
        counts = {v: sum(a.verb is v for a in writes) for v in (Verb.CREATE, Verb.UPDATE)}
        counts[Verb.DELETE] = sum(a.verb is Verb.DELETE for a in writes)
        what = ", ".join(f"{n} {verb.value}" for verb, n in counts.items() if n)
        clusters = ", ".join(sorted({a.cluster for a in writes}))
        lead = "dry run, would write" if self.dry_run else "wrote"
        return f"{self.procedure}: {lead} {len(writes)} objects ({what}) on {clusters}"

    def markdown(self) -> str:
        title = f"## {self.procedure}{' (dry run: nothing written)' if self.dry_run else ''}"
        rows = [
            f"| {a.cluster} | {a.kind} | {(a.namespace + '/') if a.namespace else ''}{a.name} "
            f"| {a.verb.value} |"
            for a in self.actions
        ]
        table = ["| cluster | kind | name | action |", "| --- | --- | --- | --- |", *rows]
        return "\n".join([title, "", *table, "", *(f"- {n}" for n in self.notes)])
