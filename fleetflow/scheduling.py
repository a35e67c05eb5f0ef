"""Custom scheduling: which members a workload may use, in what order, and how it must spread;
the step before ``placement`` divides its replicas. Pure.

A workload's placement names its members (``clusters``, ``clusterSelector`` with
``matchLabels`` and ``matchExpressions``) and, on top of that:

1. **Taints and tolerations.** A member's taint that the workload does not tolerate keeps it
   off: ``NoSchedule`` lets the member keep the replicas it runs but gives it no new ones;
   ``NoExecute`` takes them away. The member stays placeable (it is healthy), so a rebalance
   moves them off at its ``max_moves`` a run, and make-before-break: the others scale up and
   turn Ready first. A fence is the one ``NoExecute`` taint no workload may tolerate
   (``FENCE_TAINT``); it keeps its own behaviour: a failover empties the member at once.
2. **Ordered affinity groups** (Karmada's ``clusterAffinities``). The workload runs on the
   first group that can hold all of it (its healthy members' room, and its spread); the next
   group is used only when no earlier one can, and every run starts again from the first, so
   the workload comes back as soon as the first has room (at ``max_moves`` a run: it leaves
   healthy members). When no group holds it all, the group that places the most is used and
   the rest is reported unplaced. Adding a group after one that fits changes nothing.
3. **Spread constraints** ("at least 2 regions, at most 3"). Over the members of the group
   that can take a replica, the values of every label are chosen together
   (``fleetflow.spread``, as Karmada's ``selectRegions`` and ``selectClusters``): coarse labels
   first, one member per region first, the choice that keeps what already runs preferred among
   those that meet every constraint, and the order in which constraints are written never
   changes the answer. Members that must run a replica for a ``minGroups`` get a min of 1, so
   the divisor method cannot leave a value empty. A spread that cannot be met is an error (the
   workload's status and the run's report say which label, how many values could take
   replicas and why the others could not), never a silent pile-up: nothing of the workload is
   changed; the division is checked against every constraint again before it is returned.

Members the rules leave out stay in the plan at 0 with the reason, so ``--explain`` and the
plan table say why, and replicas leave them at the pace healthy members' replicas move.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleetflow.controlplane import REGION_LABEL, ZONE_LABEL
from fleetflow.errors import PlacementError
from fleetflow.placement import Candidate, Plan, plan_replicas
from fleetflow.spread import choose, state, unmet, usable

SPREAD_SHORTHANDS = {"region": REGION_LABEL, "zone": ZONE_LABEL}
"""``spreadBy`` names: ``cluster`` (each member its own value), these, or any label key."""

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
Effect = Literal["NoSchedule", "NoExecute"]


class _Rule(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class Requirement(_Rule):
    """One ``matchExpressions`` term on member labels, as in Kubernetes label selectors."""

    key: str = Field(min_length=1)
    operator: Operator
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit(self) -> Requirement:
        if self.operator in ("In", "NotIn") and not self.values:
            raise ValueError(f"matchExpressions {self.key} {self.operator}: needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise ValueError(f"matchExpressions {self.key} {self.operator}: takes no values")
        return self

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    def text(self) -> str:
        values = f" [{', '.join(self.values)}]" if self.values else ""
        return f"{self.key} {self.operator}{values}"


class ClusterSelector(_Rule):
    """Members by label: every ``matchLabels`` pair and every ``matchExpressions`` term."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[Requirement, ...] = Field(default=(), alias="matchExpressions")

    def miss(self, labels: Mapping[str, str]) -> str | None:
        """The first term these labels fail, or None when they match."""
        for key, value in self.match_labels.items():
            if labels.get(key) != value:
                return f"{key}={value}"
        for term in self.match_expressions:
            if not term.matches(labels):
                return term.text()
        return None


class AffinityGroup(_Rule):
    """One group of an ordered fallback list: members by name and/or by label."""

    name: str = Field(min_length=1)
    clusters: tuple[str, ...] | None = None
    cluster_selector: ClusterSelector | None = Field(default=None, alias="clusterSelector")

    @model_validator(mode="after")
    def _names_someone(self) -> AffinityGroup:
        if self.clusters is not None and not self.clusters:
            raise ValueError(
                f"affinity group {self.name}: clusters is empty and would match no member; "
                "list members or leave clusters out"
            )
        return self

    def miss(self, name: str, labels: Mapping[str, str]) -> str | None:
        if self.clusters is not None and name not in self.clusters:
            return "not listed"
        return self.cluster_selector.miss(labels) if self.cluster_selector else None


class SpreadConstraint(_Rule):
    """How many distinct values of a member label the workload's replicas must cover."""

    spread_by: str = Field(alias="spreadBy", min_length=1)
    min_groups: int = Field(default=1, alias="minGroups", ge=1)
    max_groups: int | None = Field(default=None, alias="maxGroups", ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> SpreadConstraint:
        if self.max_groups is not None and self.min_groups > self.max_groups:
            raise ValueError(
                f"spread by {self.spread_by}: minGroups {self.min_groups} is above "
                f"maxGroups {self.max_groups}"
            )
        return self

    def key(self) -> str:
        """The label it counts (``cluster``: each member its own value)."""
        return SPREAD_SHORTHANDS.get(self.spread_by, self.spread_by)

    def value(self, name: str, labels: Mapping[str, str]) -> str | None:
        if self.spread_by == "cluster":
            return name
        return labels.get(self.key())

    def bounds(self) -> str:
        high = f", at most {self.max_groups}" if self.max_groups else ""
        return f"at least {self.min_groups}{high}"


TAINT_PATTERN = r"^([a-z0-9.-]+/)?[A-Za-z0-9][-A-Za-z0-9_.]*(=[^:]*)?:(NoSchedule|NoExecute)$"
"""``KEY[=VALUE]:EFFECT`` as text (forms check it before a run)."""


class Taint(_Rule):
    """A member's taint: what a workload must tolerate to run there."""

    key: str = Field(min_length=1, pattern=r"^([a-z0-9.-]+/)?[A-Za-z0-9]([-A-Za-z0-9_.]*)?$")
    value: str = ""
    effect: Effect

    def text(self) -> str:
        return f"{self.key}{'=' + self.value if self.value else ''}:{self.effect}"

    @classmethod
    def parse(cls, text: str) -> Taint:
        """``key[=value]:Effect``, as ``kubectl taint`` writes them."""
        body, sep, effect = text.rpartition(":")
        key, _, value = body.partition("=")
        if not sep or effect not in ("NoSchedule", "NoExecute") or not key:
            raise PlacementError(
                f"taint {text!r}: expected KEY[=VALUE]:EFFECT with EFFECT NoSchedule or "
                "NoExecute, e.g. dedicated=gpu:NoSchedule"
            )
        return cls(key=key, value=value, effect=effect)


FENCE_TAINT = Taint(key="fleetflow.io/fenced", effect="NoExecute")
"""What a fence is, in taint terms: no workload tolerates it."""


class Toleration(_Rule):
    """Lets a workload run on members with a matching taint. ``Equal`` matches key and value,
    ``Exists`` the key alone; no ``effect`` matches both effects."""

    key: str = Field(min_length=1)
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str = ""
    effect: Effect | None = None

    @model_validator(mode="after")
    def _not_the_fence(self) -> Toleration:
        if self.key == FENCE_TAINT.key:
            raise ValueError(f"toleration {self.key}: a fence cannot be tolerated")
        if self.operator == "Exists" and self.value:
            raise ValueError(f"toleration {self.key}: operator Exists takes no value")
        return self

    def tolerates(self, taint: Taint) -> bool:
        return (
            self.key == taint.key
            and (self.effect is None or self.effect == taint.effect)
            and (self.operator == "Exists" or self.value == taint.value)
        )


class Rules(NamedTuple):
    """A workload's scheduling rules beyond its member list."""

    groups: Sequence[AffinityGroup] = ()
    spread: Sequence[SpreadConstraint] = ()
    tolerations: Sequence[Toleration] = ()


class MemberFacts(Protocol):
    """What scheduling reads of a member besides the planner's candidate."""

    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def taints(self) -> Sequence[Taint]: ...


class Facts(NamedTuple):
    """A member's labels and taints, for callers without a probed member (the CLI, benches)."""

    labels: Mapping[str, str] = {}
    taints: Sequence[Taint] = ()


class Scheduled(NamedTuple):
    """The candidates as the rules leave them, the plan over them, and what decided it."""

    candidates: list[Candidate]
    plan: Plan
    group: str | None = None
    notes: tuple[str, ...] = ()


def untolerated(taints: Iterable[Taint], tolerations: Sequence[Toleration]) -> list[Taint]:
    """The taints none of the tolerations tolerate."""
    return [t for t in taints if not any(tol.tolerates(t) for tol in tolerations)]


def applies(
    rules: Rules, candidates: Sequence[Candidate], members: Mapping[str, MemberFacts]
) -> bool:
    """Whether the rules can change anything: groups, a spread, or a tainted candidate."""
    return bool(rules.groups or rules.spread or any(members[c.name].taints for c in candidates))


def schedule(
    total: int,
    candidates: Sequence[Candidate],
    members: Mapping[str, MemberFacts],
    rules: Rules,
    *,
    capacity_aware: bool = False,
    workload: str | None = None,
) -> Scheduled:
    """Apply the rules, then divide ``total`` over what they leave (``plan_replicas``); raise
    ``PlacementError`` when no group can meet the spread or take a replica."""
    if not applies(rules, candidates, members):  # today's placement, at today's cost
        return Scheduled(
            list(candidates),
            plan_replicas(total, candidates, capacity_aware=capacity_aware, workload=workload),
        )
    notes: dict[str, str] = {}
    kept: list[Candidate] = []
    for c in candidates:
        c, why = _tainted(c, untolerated(members[c.name].taints, rules.tolerations))
        if why:
            notes[c.name] = why
        kept.append(c)
    groups: Sequence[AffinityGroup | None] = rules.groups or (None,)
    first = _first_groups(candidates, members, rules.groups)
    tried: list[tuple[int, int, Scheduled]] = []
    failures: list[tuple[int, str]] = []  # (rank, why the group was passed over)
    for rank, group in enumerate(groups):
        try:
            found = _in_group(
                total, kept, members, rules, rank, first, notes, capacity_aware, workload
            )
        except PlacementError as exc:
            failures.append((rank, f"{_group_name(group, rank)}: {exc}"))
            continue
        if not found.plan.unplaced:
            return found._replace(notes=(*(why for _, why in failures), *found.notes))
        tried.append((found.plan.unplaced, rank, found))
        placed = total - found.plan.unplaced
        failures.append((rank, f"{_group_name(group, rank)}: holds {placed} of {total}"))
    lead = f"{workload}: " if workload else ""
    if not tried and not rules.groups:
        raise PlacementError(lead + failures[0][1].removeprefix("all members: "))
    if not tried:
        whys = "; ".join(why for _, why in failures)
        raise PlacementError(f"{lead}no affinity group can take it: {whys}")
    _, chosen, best = min(tried, key=lambda t: t[:2])
    passed = [why for rank, why in failures if rank != chosen]
    return best._replace(notes=(*passed, *best.notes))


def _group_name(group: AffinityGroup | None, rank: int) -> str:
    return "all members" if group is None else f"group {group.name} (#{rank + 1})"


def _first_groups(
    candidates: Sequence[Candidate],
    members: Mapping[str, MemberFacts],
    groups: Sequence[AffinityGroup],
) -> dict[str, int]:
    """The first group each member is in (members in none are left out)."""
    first = {}
    for c in candidates:
        labels = members[c.name].labels
        rank = next((i for i, g in enumerate(groups) if g.miss(c.name, labels) is None), None)
        if rank is not None:
            first[c.name] = rank
    return first


def _tainted(c: Candidate, taints: list[Taint]) -> tuple[Candidate, str | None]:
    """The candidate as its untolerated taints leave it, and why."""
    if c.fenced or not taints:
        return c, None
    hard = [t for t in taints if t.effect == "NoExecute"]
    if hard:
        return _out(c), f"taint {hard[0].text()} not tolerated: replicas move away"
    soft = taints[0].text()
    cap = c.current if c.max is None else min(c.max, c.current)
    why = f"taint {soft} not tolerated: keeps {cap}, no new replicas"
    return c._replace(max=cap, min=min(c.min, cap)), why


def _out(c: Candidate) -> Candidate:
    """Left out by a rule: still healthy (its replicas leave at a healthy member's pace)."""
    return c._replace(weight=0, min=0, max=0)


def _in_group(
    total: int,
    candidates: list[Candidate],
    members: Mapping[str, MemberFacts],
    rules: Rules,
    rank: int,
    first: Mapping[str, int],
    taint_notes: dict[str, str],
    capacity_aware: bool,
    workload: str | None,
) -> Scheduled:
    """The plan if the workload ran on group ``rank`` alone (the rest at 0)."""
    group = rules.groups[rank] if rules.groups else None
    notes = dict(taint_notes)
    inside: list[Candidate] = []
    shaped: dict[str, Candidate] = {}
    for c in candidates:
        if group is None or group.miss(c.name, members[c.name].labels) is None:
            inside.append(c)
            continue
        shaped[c.name] = _out(c)
        home = first.get(c.name)
        notes.setdefault(
            c.name,
            "in no affinity group"
            if home is None
            else f"group {rules.groups[home].name} "
            + ("passed over" if home < rank else f"not in use while {group.name} has room"),
        )
    stuck = total and inside and not any(usable(c) for c in inside)
    if stuck and (group is not None or all(c.name in notes for c in inside)):
        # A group passed over, or taints leave nothing: say why. Members merely down with no
        # group to fall back to leave the replicas unplaced, as without rules.
        states = ", ".join(f"{c.name} {notes.get(c.name) or state(c)}" for c in inside)
        raise PlacementError(f"no member can take replicas now ({states})")
    summary: tuple[str, ...] = ()
    spread = bool(rules.spread and total)
    labels = {c.name: members[c.name].labels for c in candidates} if spread else {}
    if spread:
        choice = choose(total, inside, labels, rules.spread, workload)
        for name, why in choice.left_out.items():
            notes.setdefault(name, why)
        inside = [c if c.name in choice.allowed else _out(c) for c in inside]
        inside = [
            c._replace(min=1) if c.name in choice.forced and c.min == 0 else c for c in inside
        ]
        summary = choice.summary
    shaped.update((c.name, c) for c in inside)
    final = [shaped[c.name] for c in candidates]
    planned = plan_replicas(total, final, capacity_aware=capacity_aware, workload=workload)
    if spread and (broken := unmet(planned.replicas, labels, rules.spread)):
        raise PlacementError(broken)  # never written: a division that breaks the spread
    reasons = {}
    for c in final:
        reason = planned.reasons[c.name]
        note = notes.get(c.name)
        if note:
            kept = planned.replicas[c.name] or not c.healthy or c.fenced
            held = reason.startswith("at max") and note.startswith("taint")  # the taint's cap
            reason = f"{reason}; {note}" if kept and not held else note
        elif group is not None:
            reason = f"{reason}; group {group.name}"
        reasons[c.name] = reason
    planned = planned.model_copy(update={"reasons": reasons})
    used = () if group is None else (f"{_group_name(group, rank)} in use",)
    return Scheduled(final, planned, group.name if group else None, (*used, *summary))


def taints_after(
    current: Sequence[Taint], add: Sequence[Taint], remove: Sequence[str]
) -> list[Taint]:
    """A member's taints once ``add`` is set and ``remove`` (``KEY`` or ``KEY:EFFECT``) lifted.
    A taint added again with another value replaces the old (one per key and effect), as
    ``kubectl taint --overwrite`` does; lifting one that is not set changes nothing."""
    out = list(current)
    for text in remove:
        key, _, effect = text.partition(":")
        out = [t for t in out if not (t.key == key and effect in ("", t.effect))]
    for taint in add:
        out = [t for t in out if (t.key, t.effect) != (taint.key, taint.effect)] + [taint]
    return sorted(out, key=lambda t: (t.key, t.effect))
