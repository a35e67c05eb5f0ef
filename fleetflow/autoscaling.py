"""Federated autoscaling: one replica budget for a workload across the members, each member's
own HorizontalPodAutoscaler scaling within its share. Pure.

Kubernetes Federation v1's design, which needs no central metrics pipeline: the workload's
``minReplicas``/``maxReplicas`` are divided over the members that run it, each member's HPA
scales on its own metrics between its shares, and max budget moves from members with headroom
to members that hit their max. The total therefore stays within [min, max] across the
federation: it is the sum of numbers each between its member's min and max share.

How a division is made (``divide``), in order:

1. **The fair split of max**, with the placement planner's rules (weights, per-member min and
   max, capacity, health and fencing; bounded Sainte-Laguë, stable): what each member would
   hold with no load anywhere. A member whose share of max is 0 does not run the workload.
2. **What is owed, at once.** Budget held by a member that is no longer placeable (unhealthy,
   fenced, unselected) or a changed ``maxReplicas`` is settled in this run: owed budget goes
   first to members at their max that want more, then to those below their fair share. Budget
   above ``maxReplicas`` is taken back stopping as few running replicas as possible: budget
   above a member's cap first, then spare budget, then what a member that came back still
   holds (the others were given it while it was away); the others' running replicas only for
   a ``maxReplicas`` the user lowered.
3. **Budget moves, bounded.** Budget above a member's cap (its placement max or capacity fell)
   goes to members with room. A member whose HPA is at its max and wants more (``wanted``, the
   replica count its metrics ask for, from the HPA's status, with the controller's tolerance)
   takes budget from members whose HPA uses well below their max: a donor always keeps
   ``hysteresis`` replicas above what it uses, so the move never stops a running replica and a
   small wobble does not move budget back and forth. At most ``maxBudgetMove`` replicas of
   budget move per run.
4. **Return.** With no member wanting more, budget above the fair share goes back to the
   members below it, as far as each holder's headroom allows, at most ``maxBudgetMove`` a run.
5. **Mins**: each running member starts at 1 (an HPA's floor), and the rest of ``minReplicas``
   follows the weights, each at most its max share.

A member that does not answer (Suspect: still placeable) keeps what it last held, and no budget
leaves or joins it: what it runs now is unknown and its HPA cannot be written, so a cut there
could never pay for a rise elsewhere.

Order of writes: an HPA whose max falls is written before one whose max rises, so that the sum
of the members' maxes never exceeds the federation's max between two writes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from fleetflow.errors import PlacementError
from fleetflow.placement import Candidate, Plan, bound, plan_replicas
from fleetflow.wire import WireModel


class AutoscalingSpec(BaseModel):
    """What ``divide`` reads of a workload's ``spec.autoscaling``."""

    min_replicas: int
    max_replicas: int
    max_budget_move: int
    hysteresis: int


class Autoscaler(BaseModel):
    """A member's HPA for the workload, as read from its spec and status."""

    min: int
    max: int
    current: int = 0
    desired: int = 0
    wanted: int = 0
    """What its metrics ask for before its max caps it (``desired`` when not limited)."""
    limited: bool = False
    """At its max and wanting more (the HPA's ``ScalingLimited`` says ``TooManyReplicas``)."""
    active: bool = True
    """It has computed a count from its metrics (``ScalingActive``): until then its
    ``desired`` says nothing."""
    known: bool = True
    """Read from the member in this run. False: the last recorded state of a member that does
    not answer now (Suspect): what it runs now is unknown, so no budget leaves or joins it."""
    spec_hash: str = ""

    @property
    def used(self) -> int:
        """Replicas it runs or is about to run: a donor's floor."""
        return max(self.current, self.desired)

    @property
    def wants_more(self) -> bool:
        return self.wanted > self.max


TOO_MANY = "TooManyReplicas"
TOLERANCE = 0.1
"""The HPA controller's default tolerance (``--horizontal-pod-autoscaler-tolerance``): within
it of the target, the controller does not scale."""


def read_autoscaler(obj: Mapping[str, Any], spec_hash: str = "") -> Autoscaler:
    """A member HPA (``autoscaling/v2``) as the division reads it.

    ``wanted``: for each Resource or ContainerResource metric with a utilization target, the
    HPA's own rule ``ceil(current replicas x current / target)``, or the current replicas
    while the ratio is within ``TOLERANCE`` of 1 (the controller does not scale then); the
    highest wins, as in the HPA controller. A metric it cannot compute from the status (a value
    target, a custom metric) counts as asking one more than the max while ``ScalingLimited``
    says ``TooManyReplicas``."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    current = int(status.get("currentReplicas") or 0)
    desired = int(status.get("desiredReplicas") or 0)
    high = int(spec.get("maxReplicas") or 0)
    conditions = status.get("conditions") or []
    limited = any(
        (c.get("type"), c.get("status"), c.get("reason")) == ("ScalingLimited", "True", TOO_MANY)
        for c in conditions
    )
    active = any((c.get("type"), c.get("status")) == ("ScalingActive", "True") for c in conditions)
    targets = {}
    for metric in spec.get("metrics") or []:
        source = metric.get(_source(metric)) or {}
        utilization = (source.get("target") or {}).get("averageUtilization")
        if utilization:
            targets[(source.get("name"), source.get("container"))] = utilization
    wanted = desired
    for metric in status.get("currentMetrics") or []:
        source = metric.get(_source(metric)) or {}
        target = targets.get((source.get("name"), source.get("container")))
        now = (source.get("current") or {}).get("averageUtilization")
        if target and now is not None and current:
            ratio = now / target
            asks = current if abs(1.0 - ratio) <= TOLERANCE else math.ceil(current * ratio - 1e-9)
            wanted = max(wanted, asks)
    if limited:
        wanted = max(wanted, high + 1)
    return Autoscaler(
        min=int(spec.get("minReplicas") or 1),
        max=high,
        current=current,
        desired=desired,
        wanted=wanted,
        limited=limited,
        active=active,
        spec_hash=spec_hash,
    )


def _source(metric: Mapping[str, Any]) -> str:
    """The key of a metric's source: ``resource`` for ``type: Resource``, and so on."""
    kind = str(metric.get("type") or "")
    return kind[:1].lower() + kind[1:]


class BudgetMove(WireModel):
    """Max budget moved between two members, and why; ``source`` empty: owed budget (a
    member lost, the max changed) or the first division."""

    source: str = ""
    target: str = ""
    """Empty: budget given back (``maxReplicas`` lowered)."""
    replicas: int
    reason: str
    at: str | None = None

    def line(self) -> str:
        where = " -> ".join(m for m in (self.source, self.target) if m)
        return f"{where}: {self.replicas} of max ({self.reason})"


class Share(NamedTuple):
    """One member's part of the budget: its HPA's min and max, and, for a member that does not
    run the workload yet, the replicas its Deployment starts with. A tuple: a division of
    10,000 workloads makes a million of them."""

    min: int
    max: int
    start: int


class Budget(BaseModel):
    """The division of one workload's budget: the members that run it, the moves made, why each
    member holds what it holds, and the max no member can hold (capacity, bounds)."""

    shares: dict[str, Share] = Field(default_factory=dict)
    moves: list[BudgetMove] = Field(default_factory=list)
    reasons: dict[str, str] = Field(default_factory=dict)
    unplaced: int = 0


def check(spec: AutoscalingSpec, must_run: Iterable[str]) -> None:
    """Refuse what no division can satisfy, with the fix in the line."""
    if spec.min_replicas < 1:
        raise PlacementError(f"autoscaling.minReplicas must be at least 1, got {spec.min_replicas}")
    if spec.min_replicas > spec.max_replicas:
        raise PlacementError(
            f"autoscaling.minReplicas {spec.min_replicas} is above maxReplicas "
            f"{spec.max_replicas}: lower minReplicas or raise maxReplicas"
        )
    named = sorted(must_run)
    if len(named) > spec.max_replicas:
        raise PlacementError(
            f"autoscaling.maxReplicas {spec.max_replicas} is below the {len(named)} members that "
            f"must run it (placement min: {', '.join(named)}): each needs at least 1; raise "
            "maxReplicas or drop some placement mins"
        )


def divide(
    spec: AutoscalingSpec,
    candidates: list[Candidate],
    seen: Mapping[str, Autoscaler],
    *,
    workload: str,
    replicas: int,
    running: Mapping[str, int] | None = None,
    recorded: Mapping[str, int] | None = None,
) -> Budget:
    """Divide the budget of one workload over ``candidates`` (the placement's members; their
    ``current`` is ignored), given the member HPAs ``seen`` (by member) and the replicas the
    members ``running`` it run. ``replicas``: the workload's ``spec.replicas``, what members
    that do not run it yet start from. ``recorded``: each member's max as the last division
    recorded it (the workload's status), which tells a member that comes back still holding
    budget from a lowered ``maxReplicas``. Raise ``PlacementError`` for impossible input."""
    running = running or {}
    check(spec, [c.name for c in candidates if c.min])
    caps = {c.name: _cap(c) for c in candidates}
    # A member a rule leaves out (a NoExecute taint it does not tolerate, a max of 0) may hold
    # no budget: what its HPA held is owed to the others, as a fenced member's is.
    placeable = {c.name for c in candidates if c.healthy and not c.fenced and caps[c.name] != 0}
    held = {m: a.max for m, a in seen.items() if m in placeable and a.max > 0}
    floors = {c.name: max(c.min, 1 if held.get(c.name) else 0) for c in candidates}
    fair = _Fair(spec.max_replicas, candidates, held, workload)
    budget = Budget()
    if not held:
        shares = {m: n for m, n in fair.plan().replicas.items() if n}
        budget.moves = [
            BudgetMove(target=m, replicas=n, reason="first division: " + fair.plan().reasons[m])
            for m, n in sorted(shares.items())
        ]
    else:
        shares = {m: held.get(m, 0) for m in sorted(placeable)}
        lost = {m: a.max for m, a in seen.items() if m not in placeable and a.max > 0}
        # Without caps every member can hold any budget: nothing is left unplaced.
        capped = any(caps[m] is not None for m in placeable)
        state = _State(shares, seen, caps, floors, spec.hysteresis)
        # Budget no member can hold within its cap is not owed to anyone; a member that does not
        # answer keeps what it holds above its cap until it does.
        unplaced = fair.plan().unplaced if capped else 0
        unplaced -= sum(state.over_cap(m) for m in shares if not state.movable(m))
        owed = spec.max_replicas - max(0, unplaced) - sum(shares.values())
        if owed > 0:
            budget.moves += _give(state, owed, fair.plan().replicas, lost)
        elif owed < 0:
            back = _Back(
                returning={m: n for m, n in held.items() if recorded and m not in recorded},
                lowered=not recorded or sum(recorded.values()) > spec.max_replicas,
            )
            budget.moves += _take_back(state, -owed, fair, back)
        budget.moves += _demand(state, fair, spec.max_budget_move)
        shares = {m: n for m, n in shares.items() if n}
    budget.unplaced = fair.plan().unplaced if fair.known else 0
    budget.shares = _with_mins(spec, shares, candidates, seen, replicas, running, workload)
    budget.reasons = {
        c.name: _reason(budget.shares.get(c.name), fair, c.name, seen.get(c.name))
        for c in candidates
    }
    return budget


class _Fair:
    """The fair split of max (the planner's, with no load anywhere), made only when a step
    needs it: a division in steady state, where budget follows the load, never does."""

    def __init__(
        self, total: int, candidates: list[Candidate], held: Mapping[str, int], workload: str
    ) -> None:
        self._args = (total, candidates, held, workload)
        self._plan: Plan | None = None

    @property
    def known(self) -> bool:
        return self._plan is not None

    def plan(self) -> Plan:
        if self._plan is None:
            total, candidates, held, workload = self._args
            self._plan = plan_replicas(
                total,
                [c._replace(current=held.get(c.name, 0)) for c in candidates],
                workload=workload,
            )
        return self._plan


def _cap(c: Candidate) -> int | None:
    """The most budget a member may hold: its placement max and capacity; a standby (weight
    0) its min; none where replicas may not go."""
    if not c.healthy or c.fenced:
        return 0
    return bound(c) if c.weight else c.min


class _State(NamedTuple):
    """The shares being divided and what a move must respect."""

    shares: dict[str, int]
    seen: Mapping[str, Autoscaler]
    caps: Mapping[str, int | None]
    floors: Mapping[str, int]
    hysteresis: int

    def movable(self, m: str) -> bool:
        """Budget may leave or join a member only when the division knows what it runs now:
        a member that does not answer keeps what it holds (its HPA cannot be written)."""
        a = self.seen.get(m)
        return a is None or a.known

    def room(self, m: str) -> int:
        cap = self.caps.get(m)
        return 10**9 if cap is None else max(0, cap - self.shares.get(m, 0))

    def over_cap(self, m: str) -> int:
        cap = self.caps.get(m)
        return 0 if cap is None else max(0, self.shares.get(m, 0) - cap)

    def used(self, m: str) -> int:
        """Replicas it runs or its metrics ask for (a member with no HPA yet uses nothing)."""
        a = self.seen.get(m)
        return max(a.used, a.wanted) if a is not None else 0

    def headroom(self, m: str) -> int:
        return self.shares.get(m, 0) - self.used(m)

    def spare(self, m: str) -> int:
        """Budget a member can give without stopping a replica it runs or denying one its
        metrics ask for, keeping ``hysteresis`` above."""
        if not self.movable(m):
            return 0
        a = self.seen.get(m)
        keep = self.used(m) + self.hysteresis if a is not None else 0
        return max(0, self.shares.get(m, 0) - max(keep, self.floors.get(m, 0)))

    def need(self, m: str) -> int:
        """Budget a member at its max asks for."""
        a = self.seen.get(m)
        share = self.shares.get(m, 0)
        if a is None or not a.known or not a.wants_more or share < a.max:
            return 0
        return a.wanted - share


class _Back(NamedTuple):
    """Why budget above ``maxReplicas`` is held: members that came back still holding what the
    others were given while they were away, or a ``maxReplicas`` the user lowered."""

    returning: Mapping[str, int]
    lowered: bool


def _give(
    state: _State, owed: int, fair: Mapping[str, int], lost: Mapping[str, int]
) -> list[BudgetMove]:
    """Give owed budget at once: needy members first, then those below their fair share."""
    shares = state.shares
    why = (
        "owed: " + ", ".join(f"{m} no longer placeable (held {n})" for m, n in sorted(lost.items()))
        if lost
        else "owed: maxReplicas or the members changed"
    )
    moves = []
    order = sorted(
        (m for m in shares if state.movable(m)),
        key=lambda m: (-state.need(m), shares[m] - fair.get(m, 0), m),
    )
    for rule in ("need", "fair", "any"):
        for m in order:
            if rule == "need":
                give = state.need(m)
            elif rule == "fair":
                give = fair.get(m, 0) - shares[m]
            else:
                give = owed
            give = min(owed, give, state.room(m))
            if give > 0:
                shares[m] += give
                owed -= give
                moves.append(BudgetMove(target=m, replicas=give, reason=why))
    return moves


def _take_back(state: _State, excess: int, fairness: _Fair, back: _Back) -> list[BudgetMove]:
    """Take back budget above ``maxReplicas`` at once, stopping as few running replicas as it
    can: budget above a member's cap first, then spare budget (a member that came back first),
    then the returning members' own budget; replicas run elsewhere are stopped only for a
    ``maxReplicas`` the user lowered (or budget nothing else can cover)."""
    shares = state.shares
    movable = [m for m in shares if state.movable(m)]
    fair = fairness.plan().replicas if back.lowered else {}
    order = sorted(movable, key=lambda m: (m not in back.returning, -state.headroom(m), m))
    rules: list[tuple[str, Callable[[str], int]]] = [
        ("cap", state.over_cap),  # budget no member can hold: nothing to make first
        ("spare", state.spare),
        ("returning", lambda m: shares[m] - state.floors.get(m, 0) if m in back.returning else 0),
        ("returning", lambda m: shares[m] if m in back.returning else 0),
        ("fair", lambda m: shares[m] - max(fair.get(m, 0), state.floors.get(m, 0), state.used(m))),
        ("fair", lambda m: shares[m] - max(fair.get(m, 0), state.floors.get(m, 0))),
        ("floor", lambda m: shares[m] - state.floors.get(m, 0)),
        ("all", lambda m: shares[m]),  # more members than budget: some stop running it
    ]
    moves = []
    for rule, amount in rules:
        for m in order:
            take = min(excess, amount(m))
            if take <= 0:
                continue
            shares[m] -= take
            excess -= take
            moves.append(BudgetMove(source=m, replicas=take, reason=_back_reason(rule, m, back)))
    return moves


def _back_reason(rule: str, m: str, back: _Back) -> str:
    if rule == "returning" or (rule == "spare" and m in back.returning):
        return (
            f"{m} came back holding {back.returning[m]}: its budget went to the others while it "
            "was away"
        )
    if rule == "cap":
        return f"{m} above its cap"
    return "maxReplicas lowered" if back.lowered else "budget above maxReplicas"


def _demand(state: _State, fairness: _Fair, left: int) -> list[BudgetMove]:
    """Budget moves of this run, at most ``left`` replicas of budget in all: first budget above
    a member's cap (its placement max or capacity fell) to members with room; then to the
    members at their max that want more, else back towards the fair shares."""
    shares, moves = state.shares, []
    for giver in sorted(m for m in shares if state.movable(m) and state.over_cap(m)):
        fair = fairness.plan().replicas
        takers = sorted(
            (m for m in shares if m != giver and state.movable(m) and state.room(m)),
            key=lambda m: (-state.need(m), shares[m] - fair.get(m, 0), m),
        )
        for taker in takers:
            n = min(left, state.over_cap(giver), state.room(taker))
            if n > 0:
                reason = f"{giver} above its cap {state.caps[giver]}"
                moves.append(BudgetMove(source=giver, target=taker, replicas=n, reason=reason))
                shares[giver] -= n
                shares[taker] += n
                left -= n
    need = {m: n for m in shares if (n := min(state.need(m), state.room(m))) > 0}
    if need:
        spare = {m: n for m in shares if m not in need and (n := state.spare(m))}
        for taker in sorted(need, key=lambda m: (-need[m], m)):
            for giver in sorted(spare, key=lambda m: (-spare[m], m)):
                n = min(left, need[taker], spare[giver])
                if n <= 0:
                    continue
                a, b = state.seen[taker], state.seen.get(giver)
                used = f"uses {b.used} of {shares[giver]}" if b is not None else "not scaled yet"
                reason = f"{taker} at max {a.max} wants {a.wanted}; {giver} {used}"
                shares[taker] += n
                shares[giver] -= n
                need[taker] -= n
                spare[giver] -= n
                left -= n
                moves.append(BudgetMove(source=giver, target=taker, replicas=n, reason=reason))
        return moves
    fair = fairness.plan().replicas
    over = {m: n for m in shares if (n := min(shares[m] - fair.get(m, 0), state.spare(m))) > 0}
    under = {
        m: n
        for m in shares
        if state.movable(m) and (n := min(fair.get(m, 0) - shares[m], state.room(m))) > 0
    }
    for giver in sorted(over, key=lambda m: (-over[m], m)):
        for taker in sorted(under, key=lambda m: (-under[m], m)):
            n = min(left, over[giver], under[taker])
            if n <= 0:
                continue
            shares[giver] -= n
            shares[taker] += n
            over[giver] -= n
            under[taker] -= n
            left -= n
            reason = f"load fell: {giver} above its fair share {fair.get(giver, 0)}"
            moves.append(BudgetMove(source=giver, target=taker, replicas=n, reason=reason))
    return moves


def _with_mins(
    spec: AutoscalingSpec,
    shares: Mapping[str, int],
    candidates: list[Candidate],
    seen: Mapping[str, Autoscaler],
    replicas: int,
    running: Mapping[str, int],
    workload: str,
) -> dict[str, Share]:
    """Each running member's min (the fair split of minReplicas over them, at least 1, at most
    its max) and, for those that do not run it yet, the replicas to start with (its part of
    ``spec.replicas``, between its min and max)."""
    if not shares:
        return {}
    by_name = {c.name: c for c in candidates}
    on = [
        Candidate(
            name=m,
            weight=max(by_name[m].weight, 1),
            max=n,
            current=seen[m].min if m in seen else 0,
        )
        for m, n in sorted(shares.items())
    ]
    total_min = min(spec.min_replicas, sum(shares.values()))
    # Each running member holds 1 (the HPA's floor); the rest of min follows the weights.
    mins = dict.fromkeys(shares, 1)
    if total_min > len(shares):
        rest = [
            c._replace(max=c.max - 1 if c.max else 0, current=max(0, c.current - 1)) for c in on
        ]
        extra = plan_replicas(total_min - len(shares), rest, workload=workload).replicas
        mins = {m: 1 + extra[m] for m in shares}
    starts: Mapping[str, int] = {}
    if any(m not in running for m in shares):  # only a member new to it starts anywhere
        start_total = min(max(replicas, spec.min_replicas), sum(shares.values()))
        starts = plan_replicas(
            start_total,
            [c._replace(current=running.get(c.name, 0)) for c in on],
            workload=workload,
        ).replicas
    result = {}
    for m, n in sorted(shares.items()):
        low = min(max(mins[m], 1), n)
        result[m] = Share(low, n, min(max(starts.get(m, low), low), n))
    return result


def _reason(share: Share | None, fair: _Fair, m: str, seen: Autoscaler | None) -> str:
    wants = f", at max and wants {seen.wanted}" if seen is not None and seen.wants_more else ""
    if not fair.known:
        return f"min {share.min}, max {share.max}{wants}" if share else "no budget"
    planned = fair.plan().reasons[m]
    if share is None:
        return f"no budget ({planned})"
    what = f"min {share.min}, max {share.max}"
    fair_share = fair.plan().replicas[m]
    if share.max == fair_share:
        return f"{what}: fair share ({planned}){wants}"
    return f"{what}: fair share {fair_share}{wants or ', budget moved'}"


# --- what `fleetflow autoscale status` and the autoscale-status artifact show -----------------


class AutoscaleRow(BaseModel):
    """One member's part of an autoscaled workload, as the last rebalance recorded it; member
    None: the workload as a whole (the federation's min and max, the total, the last move)."""

    workload: str
    member: str | None = None
    min: int
    max: int
    current: int
    ready: int
    desired: int | None = None
    """What the member's HPA asked for."""
    last_move: str = ""


COLUMNS = ("WORKLOAD", "MEMBER", "MIN", "MAX", "CURRENT", "READY", "HPA DESIRED", "LAST MOVE")


def autoscale_rows(
    key: str, low: int, high: int, placements: Iterable[Any], last: BudgetMove | None
) -> list[AutoscaleRow]:
    """The rows of one autoscaled workload from its status (``placements``: its members'
    entries, each with ``name``, ``desired``, ``ready``, ``min_replicas``, ``max_replicas``,
    ``autoscaler_desired``)."""
    members = [
        AutoscaleRow(
            workload=key,
            member=p.name,
            min=p.min_replicas or 0,
            max=p.max_replicas or 0,
            current=p.desired,
            ready=p.ready,
            desired=p.autoscaler_desired,
        )
        for p in sorted(placements, key=lambda p: p.name)
    ]
    when = f" at {last.at}" if last is not None and last.at else ""
    whole = AutoscaleRow(
        workload=key,
        min=low,
        max=high,
        current=sum(r.current for r in members),
        ready=sum(r.ready for r in members),
        last_move=f"{last.line()}{when}" if last is not None else "none yet",
    )
    return [whole, *members]


def autoscale_table(rows: Iterable[AutoscaleRow]) -> str:
    """A fixed-width table: per workload its whole row (member ``-``), then its members."""
    cells = [COLUMNS] + [
        (
            r.workload,
            r.member or "-",
            str(r.min),
            str(r.max),
            str(r.current),
            str(r.ready),
            "" if r.desired is None else str(r.desired),
            r.last_move,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
